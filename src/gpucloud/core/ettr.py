"""Effective training time ratio under Llama 3's published failure rate (pure simulation).

Meta reported 466 job interruptions in 54 days of pre-training on 16,384 H100s (47 planned,
419 unexpected, about 78% of the unexpected ones hardware; "The Llama 3 Herd of Models",
2024, section 3.3.4 and Table 5). This replays interruptions at that rate per GPU-hour on jobs
of 1,024 to 16,384 GPUs. Each interruption is drawn from a root-cause mix shaped like Table 5,
turned into the signal gpucloud would see, and sent through the real classification
(``core.faults.classify``) and restart decision (``core.restarts.decide_restart``): platform
faults are detected and restarted by the platform; the job's own errors (software bugs) end the
run and are resubmitted by its owner. Every interruption throws away the work since the last
checkpoint; checkpoints are taken at the Young/Daly interval for the job's failure rate.

ETTR = productive training time / wall time.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gpucloud.core.faults import (
    DEFAULT_XID_POLICY,
    FaultAction,
    FaultSignal,
    SignalKind,
    classify,
)
from gpucloud.core.restarts import RestartPolicy, decide_restart

LLAMA3_INTERRUPTIONS = 466
LLAMA3_DAYS = 54
LLAMA3_GPUS = 16_384
RATE_PER_GPU_HOUR = LLAMA3_INTERRUPTIONS / (LLAMA3_DAYS * 24 * LLAMA3_GPUS)

# Root cause -> (share of interruptions in %, the signal it gives). Shares after Table 5 of the
# Llama 3 report (planned maintenance folded into node-level causes).
ROOT_CAUSES: Mapping[str, tuple[float, SignalKind, int | None]] = {
    "faulty GPU": (30.1, SignalKind.XID, 79),
    "GPU HBM3 memory": (17.2, SignalKind.XID, 48),
    "software bug": (12.9, SignalKind.XID, 13),
    "network switch or cable": (8.4, SignalKind.HEARTBEAT_LOSS, None),
    "host maintenance": (7.6, SignalKind.NODE_DOWN, None),
    "GPU SRAM memory": (4.5, SignalKind.XID, 94),
    "GPU system processor": (4.1, SignalKind.XID, 119),
    "NIC": (1.7, SignalKind.NODE_DOWN, None),
    "NCCL watchdog timeout": (1.7, SignalKind.XID, 43),
    "silent data corruption": (1.4, SignalKind.XID, 31),
    "GPU thermal interface and sensor": (1.4, SignalKind.XID, 62),
    "SSD": (1.4, SignalKind.NODE_DOWN, None),
    "power supply": (1.4, SignalKind.HEARTBEAT_LOSS, None),
    "server chassis": (0.7, SignalKind.HEARTBEAT_LOSS, None),
    "IO expansion board": (0.7, SignalKind.NODE_DOWN, None),
    "dependency": (0.7, SignalKind.XID, 13),
    "CPU": (0.7, SignalKind.HEARTBEAT_LOSS, None),
    "system memory": (0.7, SignalKind.HEARTBEAT_LOSS, None),
}


@dataclass(frozen=True)
class Params:
    days: float = LLAMA3_DAYS
    checkpoint_cost_s: float = 1.0  # training paused per checkpoint (an async snapshot)
    detect_xid_s: float = 0.1  # measured: bench/recovery.py on the local engine
    detect_silence_s: float = 6.0  # the heartbeat timeout (Tunables.node_silence_s)
    relaunch_s: float = 2.0  # measured: fault -> running again on the local engine
    reinit_s: float = 60.0  # the job's own restart: rendezvous, NCCL init, checkpoint load
    resubmit_s: float = 300.0  # the owner resubmitting after the job's own error
    restart: RestartPolicy = field(default_factory=RestartPolicy)


@dataclass(frozen=True)
class JobResult:
    gpus: int
    interruptions: int
    platform_restarts: int
    own_errors: int
    checkpoint_interval_s: float
    ettr: float


def young_daly_interval(checkpoint_cost_s: float, mtbf_s: float) -> float:
    """The checkpoint interval that minimises expected waste: sqrt(2 * cost * MTBF)."""
    return math.sqrt(2 * checkpoint_cost_s * mtbf_s)


def _draw_signal(rng: random.Random, seq: int) -> FaultSignal:
    causes = list(ROOT_CAUSES.values())
    _, kind, code = rng.choices(causes, weights=[c[0] for c in causes])[0]
    return FaultSignal(seq, "node", kind, datetime(2026, 1, 1, tzinfo=UTC), 0, code)


def simulate_job(gpus: int, params: Params, rng: random.Random) -> JobResult:
    rate_s = RATE_PER_GPU_HOUR * gpus / 3600  # interruptions per second of wall time
    interval = young_daly_interval(params.checkpoint_cost_s, 1 / rate_s)
    horizon = params.days * 86400
    t = productive = since_checkpoint = 0.0
    interruptions = platform = own = 0
    restarts_since_progress = 0
    next_fault = rng.expovariate(rate_s)
    while t < horizon:
        work = min(interval - since_checkpoint, horizon - t)
        if t + work < next_fault:  # reach the checkpoint (or the end) before the fault
            t += work
            since_checkpoint += work
            if since_checkpoint >= interval:
                productive += since_checkpoint
                since_checkpoint = 0.0
                t += params.checkpoint_cost_s
                restarts_since_progress = 0
            continue
        t = next_fault  # the fault: the work since the last checkpoint is gone
        interruptions += 1
        since_checkpoint = 0.0
        signal = _draw_signal(rng, interruptions)
        decision = classify(signal, DEFAULT_XID_POLICY)
        if decision.action is FaultAction.APPLICATION:
            own += 1
            down = params.resubmit_s
        else:
            platform += 1
            silent = signal.kind is SignalKind.HEARTBEAT_LOSS
            detect = params.detect_silence_s if silent else params.detect_xid_s
            restart = decide_restart(restarts_since_progress, params.restart)
            restarts_since_progress += 1
            down = detect + restart.delay_s + params.relaunch_s
        t += down + params.reinit_s
        next_fault = t + rng.expovariate(rate_s)
    productive += since_checkpoint  # the last stretch counts at the end of the run
    return JobResult(gpus, interruptions, platform, own, interval, min(1.0, productive / t))


def simulate(sizes: Sequence[int], params: Params, seeds: Sequence[int]) -> list[JobResult]:
    """One result per size: interruptions summed over seeds, ETTR averaged over them."""
    results = []
    for gpus in sizes:
        runs = [simulate_job(gpus, params, random.Random(seed * 1_000_003 + gpus))
                for seed in seeds]
        results.append(JobResult(
            gpus,
            sum(r.interruptions for r in runs),
            sum(r.platform_restarts for r in runs),
            sum(r.own_errors for r in runs),
            runs[0].checkpoint_interval_s,
            sum(r.ettr for r in runs) / len(runs),
        ))
    return results
