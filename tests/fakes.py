"""An in-memory engine for testing controllers at their boundary (the real ones have their own
integration tests with real processes)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from gpucloud.core.faults import SignalKind
from gpucloud.engines.base import (
    BurnInResult,
    DeviceReport,
    EngineRef,
    FaultSignal,
    LaunchSpec,
    NodeReport,
    RunPhase,
    RunStatus,
)


def gpu_node(
    node_id: str = "n0",
    gpus: int = 8,
    model: str = "H100",
    cpu_milli: int = 64000,
    memory_mib: int = 512 * 1024,
) -> NodeReport:
    devices = tuple(
        DeviceReport(
            index=i, model=model, memory_mib=80 * 1024, uuid=f"GPU-{node_id}-{i}", simulated=True
        )
        for i in range(gpus)
    )
    return NodeReport(id=node_id, cpu_milli=cpu_milli, memory_mib=memory_mib, devices=devices)


@dataclass
class FakeRun:
    spec: LaunchSpec
    phase: RunPhase = RunPhase.RUNNING
    exit_code: int | None = None
    signals: list[str] = field(default_factory=list)
    output: bytes = b""


class FakeEngine:
    name = "fake"

    def __init__(self, nodes: Sequence[NodeReport], checkpoint_root: Path | None = None) -> None:
        self.checkpoint_root = checkpoint_root
        self.node_reports = list(nodes)
        self.runs: dict[EngineRef, FakeRun] = {}
        self.starts = 0  # how many times a process was really started
        self.drained: dict[str, str] = {}
        self.signals: list[FaultSignal] = []
        self.burn_ins: list[tuple[str, int | None]] = []
        self.burn_in_passes = True

    def nodes(self) -> list[NodeReport]:
        return [
            replace(n, drained=True, drain_reason=self.drained[n.id]) if n.id in self.drained
            else n
            for n in self.node_reports
        ]

    def checkpoint_dir(self, job_id: str) -> str:
        if self.checkpoint_root is None:
            return f"/checkpoints/{job_id}"
        path = self.checkpoint_root / job_id
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    def launch(self, spec: LaunchSpec) -> EngineRef:
        ref = f"fake:{spec.launch_id}"
        if ref not in self.runs:
            self.runs[ref] = FakeRun(spec)
            self.starts += 1
        return ref

    def status(self, refs: Sequence[EngineRef]) -> dict[EngineRef, RunStatus]:
        out = {}
        for ref in refs:
            run = self.runs.get(ref)
            out[ref] = (
                RunStatus(RunPhase.LOST, message="no such run")
                if run is None
                else RunStatus(run.phase, run.exit_code)
            )
        return out

    def stop(self, ref: EngineRef, force: bool = False) -> None:
        self.runs[ref].signals.append("KILL" if force else "TERM")

    def logs(self, ref: EngineRef, follow: bool = False, offset: int = 0) -> Iterator[bytes]:
        run = self.runs.get(ref)
        if run is not None and run.output[offset:]:
            yield run.output[offset:]

    def drain(self, node_id: str, reason: str) -> None:
        self.drained[node_id] = reason

    def faults(self, after: int) -> list[FaultSignal]:
        return [s for s in self.signals if s.seq > after]

    def burn_in(self, node_id: str, device_index: int | None) -> BurnInResult:
        self.burn_ins.append((node_id, device_index))
        return BurnInResult(self.burn_in_passes, "fake check")

    def resume(self, node_id: str) -> None:
        self.drained.pop(node_id, None)

    # --- test controls ---
    def exit(self, job_id: str, code: int) -> None:
        for run in self.runs.values():
            if run.spec.job_id == job_id:
                run.phase, run.exit_code = RunPhase.EXITED, code

    def run_of(self, job_id: str) -> FakeRun:
        return next(r for r in self.runs.values() if r.spec.job_id == job_id)

    def runs_of(self, job_id: str) -> list[FakeRun]:
        """Every attempt of the job, oldest first."""
        return [r for r in self.runs.values() if r.spec.job_id == job_id]

    def signal(self, node_id: str, kind: SignalKind, at: datetime,
               device_index: int | None = None, code: int | None = None) -> None:
        """A health signal, as an engine would report it."""
        seq = len(self.signals) + 1
        self.signals.append(FaultSignal(seq, node_id, kind, at, device_index, code))
