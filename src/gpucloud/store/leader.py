"""The leader lease in the database: acquire, renew, release, and the fencing check.

Each step is one short transaction. On PostgreSQL the row is read ``FOR UPDATE`` (acquire and
renew) or ``FOR SHARE`` (the fence at the end of a controller write), so an acquisition waits
for every in-flight controller commit of the old holder and then bumps the token; a commit that
comes after it re-reads the bumped token and is refused. On SQLite every write transaction
already holds the database's one write lock (``BEGIN IMMEDIATE``), which gives the same order.
Time is the database's clock on PostgreSQL (replicas on several machines agree on it).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gpucloud.core import leadership
from gpucloud.core.leadership import Held, LeadershipLost, LeaseRow, Step
from gpucloud.store.db import Database
from gpucloud.store.models_control import LeaderLease

log = logging.getLogger("gpucloud.leader")


def _machine() -> str:
    """This host and PID namespace: where a holder's pid can be looked up."""
    try:
        namespace = str(Path("/proc/self/ns/pid").readlink()).removeprefix("pid:").strip("[]")
    except OSError:
        namespace = "?"
    return f"{socket.gethostname()}@{namespace}"


def replica_id(port: int) -> str:
    """Unique per process start: a restarted replica is a new holder with a new token."""
    return f"{_machine()}:{port}:{os.getpid()}:{secrets.token_hex(3)}"


def holder_gone(holder: str | None) -> bool:
    """The holder ran on this machine and its process no longer exists (SIGKILL, a crash).
    Anything unknown (another machine, an unparsable id, no permission) counts as alive."""
    if holder is None:
        return False
    machine, _, rest = holder.partition(":")
    parts = rest.split(":")
    if machine != _machine() or "?" in machine or len(parts) != 3 or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _row(lease: LeaderLease | None) -> LeaseRow | None:
    if lease is None:
        return None
    return LeaseRow(lease.name, lease.holder, lease.token, lease.expires_at)


def db_now(session: Session) -> datetime:
    """The database's clock on PostgreSQL; this machine's on SQLite (one machine anyway)."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        value = session.scalar(select(func.clock_timestamp()))
        assert isinstance(value, datetime)
        return value.astimezone(UTC)
    return datetime.now(UTC)


def read_lease(session: Session, name: str = leadership.CONTROLLERS) -> LeaderLease | None:
    return session.get(LeaderLease, name)


class LeaderElector:
    """This replica's side of one lease. ``step`` is called every ``renew_every_s`` by the
    control loop's lease thread; ``pass_token`` is what the current controller pass may write
    under (``FencedDatabase`` checks it at the end of every write transaction)."""

    def __init__(
        self,
        db: Database,
        me: str,
        name: str = leadership.CONTROLLERS,
        ttl_s: float = leadership.LEASE_TTL_S,
        renew_every_s: float = leadership.RENEW_EVERY_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.me = me
        self.name = name
        self.ttl_s = ttl_s
        self.renew_every_s = renew_every_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._held: Held | None = None
        self._renewed_mono: float | None = None  # when the last successful step *began*
        self.pass_token: int | None = None
        self.acquisitions = 0

    # --- the lease thread ------------------------------------------------------------------

    def step(self) -> Step:
        """Acquire, renew or follow, in one transaction. Raises what the database raises
        (the caller backs off); leadership then lapses by itself on the monotonic clock."""
        began = self._monotonic()
        with self._lock:
            held = self._held
        try:
            with self.db.write() as session:
                lease = session.scalars(
                    select(LeaderLease).where(LeaderLease.name == self.name).with_for_update()
                ).one_or_none()
                now = db_now(session)
                row = _row(lease)
                gone = row is not None and holder_gone(row.holder)
                step = leadership.decide(row, now, self.me, held, gone)
                expires = leadership.expiry(now, self.ttl_s)
                if step is Step.ACQUIRE:
                    token = leadership.next_token(row)
                    if lease is None:
                        session.add(LeaderLease(name=self.name, holder=self.me, token=token,
                                                expires_at=expires, acquired_at=now,
                                                renewed_at=now))
                    else:
                        lease.holder, lease.token = self.me, token
                        lease.expires_at, lease.acquired_at, lease.renewed_at = expires, now, now
                    new_held: Held | None = Held(token, expires)
                elif step is Step.RENEW:
                    assert lease is not None and held is not None
                    lease.expires_at, lease.renewed_at = expires, now
                    new_held = Held(held.token, expires)
                else:
                    new_held = None
        except IntegrityError:  # another replica inserted the first row at the same moment
            step, new_held = Step.FOLLOW, None
        with self._lock:
            if step is Step.ACQUIRE:
                self.acquisitions += 1
                assert new_held is not None
                log.warning("leader: %s acquired the %s lease (token %d)", self.me, self.name,
                            new_held.token)
            elif step is Step.FOLLOW and held is not None:
                log.warning("leader: %s lost the %s lease", self.me, self.name)
            self._held = new_held
            self._renewed_mono = began if new_held is not None else None
        return step

    def release(self) -> None:
        """On a clean shutdown: expire our lease now, so a follower takes over at once."""
        with self._lock:
            held, self._held, self._renewed_mono = self._held, None, None
        if held is None:
            return
        with self.db.write() as session:
            now = db_now(session)
            session.execute(
                update(LeaderLease)
                .where(LeaderLease.name == self.name, LeaderLease.holder == self.me,
                       LeaderLease.token == held.token)
                .values(holder=None, expires_at=now)
            )

    # --- the control loop ------------------------------------------------------------------

    def may_run(self) -> bool:
        with self._lock:
            return leadership.may_run(self._renewed_mono, self._monotonic(), self.ttl_s,
                                      min(leadership.SAFETY_MARGIN_S, self.ttl_s / 2))

    def begin_pass(self) -> bool:
        """Pin the token the next controller pass writes under; False: do not run one."""
        with self._lock:
            held = self._held
        if held is None or not self.may_run():
            self.pass_token = None
            return False
        self.pass_token = held.token
        return True

    @property
    def token(self) -> int | None:
        with self._lock:
            return self._held.token if self._held is not None else None

    # --- the fence -------------------------------------------------------------------------

    def check(self, session: Session) -> None:
        """Inside a controller's write transaction, last: commit only under our token."""
        token = self.pass_token
        current = session.execute(
            select(LeaderLease.holder, LeaderLease.token)
            .where(LeaderLease.name == self.name)
            .with_for_update(read=True)
        ).one_or_none()
        if token is None or current is None or tuple(current) != (self.me, token):
            raise LeadershipLost(
                f"{self.me} may no longer write as the {self.name} leader (pass token {token},"
                f" lease now {tuple(current) if current is not None else None})"
            )


class FencedDatabase(Database):
    """The controllers' view of the database: the same engine, sessions and write queue, but
    every write transaction ends with the elector's fencing check before it commits."""

    def __init__(self, inner: Database, elector: LeaderElector) -> None:
        # Share everything the inner one built (one pool, one SQLite writer lock); no new engine.
        vars(self).update(vars(inner))
        self.elector = elector

    @contextmanager
    def write(self) -> Iterator[Session]:
        with super().write() as session:
            yield session
            session.flush()  # the transaction's own writes first, then the check, then commit
            self.elector.check(session)
