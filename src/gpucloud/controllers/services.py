"""Converges every service's replica jobs to the desired count and version.

Level-triggered, one pass per tick for each living service:

1. each replica follows its job (placed: its host is known; ended: STOPPED or FAILED);
2. running replicas are probed at the readiness path (READY joins the router's rotation, two
   failures in a row take it out);
3. the autoscaler turns the router's traffic into ``desired_replicas``
   (``core.services.desired_replicas``);
4. ``core.services.plan`` says which replicas to start and drain: a rolling update starts a
   new-version replica, waits until it is READY, then drains an old one;
5. a draining replica is stopped once the router has had time to take it out of rotation and
   no request is in flight to it (or after a timeout).

The job of each replica is driven by the scheduler, launcher, metering (per replica-second)
and self-healing like any job. What is lost on a restart is only in-memory traffic history:
the controller then holds its replicas until a full window has been observed again.
"""

from __future__ import annotations

import logging
import random
import socket
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from gpucloud.controllers.context import Context
from gpucloud.controllers.service_traffic import TRAFFIC, Reading, ServiceTraffic
from gpucloud.core.clock import as_utc
from gpucloud.core.lifecycle import StopReason
from gpucloud.core.services import (
    ReplicaState,
    ReplicaView,
    Sample,
    ServiceState,
    desired_replicas,
    drained,
    plan,
    service_state,
)
from gpucloud.core.states import JobState, Reason
from gpucloud.store import services as store
from gpucloud.store.jobs import active_allocations, request_stop
from gpucloud.store.models import Job, Node
from gpucloud.store.models_services import Service, ServiceReplica
from gpucloud.store.transitions import record_event, transition

log = logging.getLogger("gpucloud.services")


@dataclass(frozen=True)
class ServiceTunables:
    probe_timeout_s: float = 1.0
    probe_failures: int = 2  # failed probes in a row that take a READY replica out
    drain_settle_s: float = 1.5  # the router's route cache must have dropped a draining one
    drain_timeout_s: float = 30.0  # stop it anyway after this long
    history_s: float = 600.0  # traffic samples kept (at least the stabilisation window)
    crash_limit: int = 3  # replicas that failed on their own within crash_window_s: hold off
    crash_window_s: float = 60.0


@dataclass(frozen=True)
class _Probe:
    replica_id: str
    url: str


class ServiceController:
    name = "services"

    def __init__(self, ctx: Context, traffic: ServiceTraffic = TRAFFIC,
                 tunables: ServiceTunables | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ctx = ctx
        self.traffic = traffic
        self.tunables = tunables or ServiceTunables()
        self._mono = monotonic
        self._http = httpx.Client(timeout=self.tunables.probe_timeout_s)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="gpucloud-probe")
        self._failures: dict[str, int] = {}
        self._previous: dict[str, Reading] = {}
        self._samples: dict[str, deque[Sample]] = {}

    def reconcile_once(self) -> None:
        for service_id in self._living():
            try:
                self._reconcile(service_id)
            except StaleDataError:
                log.info("service %s changed while reconciling; next pass", service_id)

    def _living(self) -> list[str]:
        with self.ctx.db.read() as session:
            return list(session.scalars(select(Service.id).where(
                Service.state != ServiceState.DELETED).order_by(Service.id)))

    def _reconcile(self, service_id: str) -> None:
        self._follow_jobs(service_id)
        self._probe(service_id)
        now = self.ctx.clock.now()
        now_s = self._mono()
        with self.ctx.db.write() as session:
            service = session.get_one(Service, service_id)
            replicas = store.replicas(session, service_id)
            if not service.deleting:
                self._autoscale(session, service, now, now_s)
            step = plan(service.desired_replicas, service.generation,
                        [ReplicaView(r.id, r.generation, ReplicaState(r.state))
                         for r in replicas])
            by_id = {r.id: r for r in replicas}
            for replica_id in step.drain:
                store.set_replica_state(session, service, by_id[replica_id],
                                        ReplicaState.DRAINING, now, _why_drain(service))
            for _ in range(0 if self._crash_looping(session, service, now) else step.start):
                store.start_replica(session, self.ctx.ids, service, self._port(), now)
            self._stop_drained(session, service, replicas, now)
            self._derive_state(session, service, now)

    def _crash_looping(self, session: Session, service: Service, now: datetime) -> bool:
        """Replicas of this version that failed on their own lately: wait before the next
        (a command that cannot serve does not start a job every tick)."""
        since = now - timedelta(seconds=self.tunables.crash_window_s)
        failed = session.scalars(select(ServiceReplica.id).where(
            ServiceReplica.service_id == service.id,
            ServiceReplica.generation == service.generation,
            ServiceReplica.state == ReplicaState.FAILED, ServiceReplica.ended_at >= since))
        return len(list(failed)) >= self.tunables.crash_limit

    # --- 1. replicas follow their jobs ------------------------------------------------------

    def _follow_jobs(self, service_id: str) -> None:
        now = self.ctx.clock.now()
        with self.ctx.db.write() as session:
            service = session.get_one(Service, service_id)
            for replica in store.replicas(session, service_id):
                job = session.get_one(Job, replica.job_id)
                self._follow(session, service, replica, job, now)

    def _follow(self, session: Session, service: Service, replica: ServiceReplica, job: Job,
                now: datetime) -> None:
        state, job_state = ReplicaState(replica.state), JobState(job.state)
        if job_state.terminal:
            stopped = state in (ReplicaState.STOPPING, ReplicaState.DRAINING) or (
                job_state is JobState.CANCELLED)
            target = ReplicaState.STOPPED if stopped else ReplicaState.FAILED
            message = ("stopped" if stopped else
                       f"its process ended ({job.reason}) {job.message}".strip())
            store.set_replica_state(session, service, replica, target, now, message)
            self._failures.pop(replica.id, None)
            return
        if job_state is JobState.RUNNING:
            if replica.host is None:
                replica.host = _host_of(session, job)
            if state is ReplicaState.STARTING and replica.host is not None:
                store.set_replica_state(session, service, replica, ReplicaState.UNREADY, now,
                                        f"running on {replica.host}:{replica.port}; waiting "
                                        f"for {store.spec_of(service).readiness_path}")
            return
        if state in (ReplicaState.UNREADY, ReplicaState.READY):
            # requeued by self-healing: it will run elsewhere, perhaps on another node
            replica.host = None
            store.set_replica_state(session, service, replica, ReplicaState.STARTING, now,
                                    f"its job was requeued ({job.reason})")

    # --- 2. readiness -------------------------------------------------------------------------

    def _probe(self, service_id: str) -> None:
        with self.ctx.db.read() as session:
            service = session.get_one(Service, service_id)
            path = store.spec_of(service).readiness_path
            probes = [_Probe(r.id, f"http://{r.host}:{r.port}{path}")
                      for r in store.replicas(session, service_id)
                      if r.state in (ReplicaState.UNREADY, ReplicaState.READY)
                      and r.host is not None]
        if not probes:
            return
        results = dict(zip((p.replica_id for p in probes),
                           self._pool.map(self._passes, [p.url for p in probes]), strict=True))
        now = self.ctx.clock.now()
        with self.ctx.db.write() as session:
            service = session.get_one(Service, service_id)
            for replica in store.replicas(session, service_id):
                if replica.id not in results:
                    continue
                ok, detail = results[replica.id]
                state = ReplicaState(replica.state)
                if ok:
                    self._failures.pop(replica.id, None)
                    if state is ReplicaState.UNREADY:
                        store.set_replica_state(session, service, replica, ReplicaState.READY,
                                                now, "readiness passed")
                    continue
                failures = self._failures.get(replica.id, 0) + 1
                self._failures[replica.id] = failures
                if state is ReplicaState.READY and failures >= self.tunables.probe_failures:
                    store.set_replica_state(session, service, replica, ReplicaState.UNREADY,
                                            now, f"readiness failed: {detail}")

    def _passes(self, url: str) -> tuple[bool, str]:
        try:
            answer = self._http.get(url)
        except httpx.HTTPError as err:
            return False, type(err).__name__
        if 200 <= answer.status_code < 400:
            return True, ""
        return False, f"HTTP {answer.status_code}"

    # --- 3. autoscaling -----------------------------------------------------------------------

    def _autoscale(self, session: Session, service: Service, now: datetime,
                   now_s: float) -> None:
        reading = self.traffic.reading(service.id, now_s)
        previous = self._previous.get(service.id)
        self._previous[service.id] = reading
        samples = self._samples.setdefault(service.id, deque())
        if previous is not None and reading.at_s > previous.at_s:
            span = reading.at_s - previous.at_s
            samples.append(Sample(now_s, (reading.started - previous.started) / span,
                                  (reading.busy_s - previous.busy_s) / span, reading.waiting))
        elif reading.waiting:
            samples.append(Sample(now_s, 0.0, float(reading.waiting), reading.waiting))
        while samples and samples[0].at_s < now_s - self.tunables.history_s:
            samples.popleft()
        last_request_s = self._last_request_s(service, reading, now, now_s)
        spec = store.spec_of(service)
        scale = desired_replicas(spec, list(samples), now_s, last_request_s,
                                 service.desired_replicas)
        if scale.desired != service.desired_replicas:
            record_event(session, at=now, object_kind=store.OBJECT_KIND, object_id=service.id,
                         kind="service.scaled", tenant_id=service.tenant_id, reason="AUTOSCALED",
                         before=str(service.desired_replicas), after=str(scale.desired),
                         message=f"{service.desired_replicas} -> {scale.desired} replicas "
                                 f"({scale.why})")
            service.desired_replicas = scale.desired
            service.updated_at = now

    def _last_request_s(self, service: Service, reading: Reading, now: datetime,
                        now_s: float) -> float:
        """The last request in monotonic seconds: the router's, else the stored one (a
        restarted control plane keeps counting the idle time from the last request it knew)."""
        stored = as_utc(service.last_request_at or service.created_at)
        stored_s = now_s - (now - stored).total_seconds()
        if reading.last_request_s is not None and reading.last_request_s > stored_s:
            seen = now - timedelta(seconds=now_s - reading.last_request_s)
            if (seen - stored).total_seconds() >= 5:  # a row write every 5 s at most
                service.last_request_at = seen
            return reading.last_request_s
        return stored_s

    # --- 4/5. draining ------------------------------------------------------------------------

    def _stop_drained(self, session: Session, service: Service,
                      replicas: list[ServiceReplica], now: datetime) -> None:
        for replica in replicas:
            if replica.state is not ReplicaState.DRAINING or replica.draining_at is None:
                continue
            draining_for = (now - as_utc(replica.draining_at)).total_seconds()
            if not drained(self.traffic.outstanding(replica.id), draining_for,
                           self.tunables.drain_settle_s, self.tunables.drain_timeout_s):
                continue
            store.set_replica_state(session, service, replica, ReplicaState.STOPPING, now,
                                    "drained")
            _stop_job(session, session.get_one(Job, replica.job_id), now)

    def _derive_state(self, session: Session, service: Service, now: datetime) -> None:
        session.flush()
        replicas = store.replicas(session, service.id)
        ready = sum(1 for r in replicas if r.state is ReplicaState.READY)
        target = service_state(service.deleting, service.desired_replicas, ready, len(replicas))
        if target is not service.state:
            store.set_state(session, service, target, target.value, now,
                            f"{ready} of {service.desired_replicas} replicas ready")

    def _port(self) -> int:
        """A free port for the next replica. The local engine's node is this machine; on
        other engines the replica runs elsewhere, so a random high port is taken (a clash
        fails its readiness and the replica is replaced)."""
        if self.ctx.engine.name == "local":
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port: int = sock.getsockname()[1]
                return port
        return random.randint(20000, 59999)


def _host_of(session: Session, job: Job) -> str | None:
    allocations = active_allocations(session, job.id)
    if not allocations:
        return None
    node = session.get(Node, allocations[0].node_id)
    return node.address if node is not None else None


def _why_drain(service: Service) -> str:
    if service.deleting:
        return "draining: the service is deleted"
    return "draining"


def _stop_job(session: Session, job: Job, now: datetime) -> None:
    """Not yet placed: cancelled at once. Placed: the launcher stops it (idempotent)."""
    state = JobState(job.state)
    if state.terminal:
        return
    message = "stopped with its service replica"
    if state in (JobState.PENDING, JobState.QUEUED):
        transition(session, job, JobState.CANCELLED, Reason.CANCELLED_BY_USER, now, message)
    else:
        request_stop(session, job, StopReason.CANCELLED, now, message)
