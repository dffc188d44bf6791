"""Time-based replay of a trace through the queueing layer (``scheduler.schedule``).

Pods arrive at their creation time and, once started, run for ``deletion - scheduled`` seconds of
trace time. At each instant something happens (arrivals or completions, coalesced into ``tick_s``
buckets so that a long trace stays cheap), one scheduling pass decides what starts and what is
preempted; a preempted pod goes back to the queue and runs its whole duration again (the trace
has no checkpoints). Pure: pods and nodes in, a ``ReplayResult`` out.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from gpucloud.scheduling.decisions import Running
from gpucloud.scheduling.fgd_sim import ScorerFactory
from gpucloud.scheduling.frag import typical
from gpucloud.scheduling.model import MILLI, ClusterSnapshot, Device, Node, Placement, Workload
from gpucloud.scheduling.scheduler import SchedulerConfig, schedule
from gpucloud.scheduling.traces import PodTimes


@dataclass(frozen=True)
class TimedPod:
    workload: Workload
    arrival_s: int
    duration_s: int | None  # None: runs to the end of the replay


@dataclass(frozen=True)
class ReplayResult:
    samples: tuple[tuple[int, float], ...]  # (time, % of GPU milli allocated), after each pass
    waits_s: dict[str, int]  # started pods: first start minus arrival
    completions_s: dict[str, int]  # finished pods: end minus arrival
    never_started: tuple[str, ...]
    preemptions: int
    passes: int

    def utilisation_pct(self) -> float:
        """Time-weighted mean of the allocated share between the first and last sample."""
        if len(self.samples) < 2:
            return self.samples[0][1] if self.samples else 0.0
        pairs = zip(self.samples, self.samples[1:], strict=False)
        total = sum((b[0] - a[0]) * a[1] for a, b in pairs)
        span = self.samples[-1][0] - self.samples[0][0]
        return total / span if span else self.samples[-1][1]


def percentile(values: Sequence[int], pct: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return float(ordered[rank - 1])


@dataclass
class _Live:
    pod: TimedPod
    placement: Placement
    started_s: int


class _Replay:
    def __init__(self, nodes: Sequence[Node], scorer_factory: ScorerFactory,
                 pods: Sequence[TimedPod], config: SchedulerConfig) -> None:
        self.nodes = {n.name: n for n in nodes}
        self.order = [n.name for n in nodes]
        self.capacity = sum(len(n.devices) for n in nodes) * MILLI
        dist = typical(p.workload.shape for p in pods)
        self.scorer = scorer_factory(dist, [p.workload for p in pods], np.random.default_rng(0))
        self.config = config
        self.live: dict[str, _Live] = {}
        self.queue: list[TimedPod] = []
        self.ends: list[tuple[int, str]] = []  # heap of (end time, pod id) of live pods
        self.waits: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.samples: list[tuple[int, float]] = []
        self.preemptions = 0
        self.passes = 0

    def snapshot(self) -> ClusterSnapshot:
        cpu: dict[str, int] = {}
        mem: dict[str, int] = {}
        dev: dict[tuple[str, int], int] = {}
        for live in self.live.values():
            p = live.placement
            cpu[p.node] = cpu.get(p.node, 0) + p.cpu_milli
            mem[p.node] = mem.get(p.node, 0) + p.memory_mib
            for index in p.devices:
                dev[(p.node, index)] = dev.get((p.node, index), 0) + p.gpu_milli
        nodes = []
        for name in self.order:
            node = self.nodes[name]
            if name not in cpu:
                nodes.append(node)
                continue
            devices = tuple(
                Device(d.index, d.model, MILLI - dev.get((name, d.index), 0), d.healthy)
                for d in node.devices
            )
            nodes.append(replace(node, devices=devices, cpu_free=node.cpu_milli - cpu[name],
                                 memory_free=node.memory_mib - mem[name]))
        return ClusterSnapshot(tuple(nodes))

    def running(self, now: int) -> list[Running]:
        return [
            Running(live.pod.workload, live.placement,
                    None if live.pod.duration_s is None
                    else float(live.started_s + live.pod.duration_s - now))
            for live in self.live.values()
        ]

    def finish_until(self, now: int) -> None:
        while self.ends and self.ends[0][0] <= now:
            end, pod_id = heapq.heappop(self.ends)
            live = self.live.get(pod_id)
            if live is None or live.started_s + (live.pod.duration_s or 0) != end:
                continue  # preempted since: a stale entry
            del self.live[pod_id]
            self.done[pod_id] = end - live.pod.arrival_s

    def pass_at(self, now: int) -> None:
        if not self.queue:
            return
        self.passes += 1
        plan = schedule(self.snapshot(), [p.workload for p in self.queue], self.scorer,
                        self.config, self.running(now))
        by_id = {p.workload.id: p for p in self.queue}
        for victim in plan.preemptions:
            live = self.live.pop(victim.workload_id, None)
            if live is not None:
                self.preemptions += 1
                self.queue.append(live.pod)  # starts over: the trace has no checkpoints
        started = set()
        for placement in plan.placements:
            pod = by_id[placement.workload_id]
            self.live[pod.workload.id] = _Live(pod, placement, now)
            self.waits.setdefault(pod.workload.id, now - pod.arrival_s)
            if pod.duration_s is not None:
                heapq.heappush(self.ends, (now + pod.duration_s, pod.workload.id))
            started.add(pod.workload.id)
        self.queue = [p for p in self.queue if p.workload.id not in started]

    def sample(self, now: int) -> None:
        used = sum(lv.placement.gpu_milli * len(lv.placement.devices) for lv in self.live.values())
        self.samples.append((now, 100.0 * used / self.capacity if self.capacity else 0.0))


def replay(nodes: Sequence[Node], pods: Sequence[TimedPod], scorer_factory: ScorerFactory,
           config: SchedulerConfig | None = None, tick_s: int = 1) -> ReplayResult:
    """Replay ``pods`` on ``nodes``; events within one ``tick_s`` bucket share a pass."""
    if tick_s < 1:
        raise ValueError("tick_s must be at least 1 second")
    run = _Replay(nodes, scorer_factory, pods, config or SchedulerConfig())
    arrivals = sorted(pods, key=lambda p: (p.arrival_s, p.workload.id))
    i = 0
    while i < len(arrivals) or run.ends:
        next_arrival = arrivals[i].arrival_s if i < len(arrivals) else math.inf
        next_end = run.ends[0][0] if run.ends else math.inf
        first = min(next_arrival, next_end)
        now = int(-(-first // tick_s) * tick_s)  # the end of the bucket holding the event
        run.finish_until(now)
        while i < len(arrivals) and arrivals[i].arrival_s <= now:
            run.queue.append(arrivals[i])
            i += 1
        run.pass_at(now)
        run.sample(now)
        if i >= len(arrivals) and not run.ends:
            break
    started = set(run.waits)
    return ReplayResult(
        samples=tuple(run.samples),
        waits_s=run.waits,
        completions_s=run.done,
        never_started=tuple(p.workload.id for p in pods if p.workload.id not in started),
        preemptions=run.preemptions,
        passes=run.passes,
    )


def timed_pods(rows: Sequence[tuple[Workload, PodTimes]]) -> list[TimedPod]:
    """Trace rows to replayable pods: arrival at creation, run time ``deletion - scheduled``
    (unknown: to the end). The run time is also the pod's time limit, as if users gave exact
    limits, which is what backfill reads."""
    pods = []
    for workload, times in rows:
        duration = None
        if times.deletion is not None and times.scheduled is not None:
            duration = max(0, times.deletion - times.scheduled)
        limited = replace(workload, time_limit_s=None if duration is None else float(duration))
        pods.append(TimedPod(limited, times.creation or 0, duration))
    return pods
