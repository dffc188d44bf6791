"""An append-only file of health signals, numbered in order: what an engine saw survives the
control plane, and the health controller reads it from its own cursor (exactly once)."""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime
from pathlib import Path

from gpucloud.core.faults import FaultSignal, SignalKind


class FaultLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._signals: list[FaultSignal] = self._load()

    def _load(self) -> list[FaultSignal]:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        signals = []
        for line in lines:
            try:
                signals.append(_decode(json.loads(line)))
            except (ValueError, KeyError):
                continue  # a line cut short by a crash mid-write: it was never acknowledged
        return signals

    def append(self, node_id: str, kind: SignalKind, at: datetime,
               device_index: int | None = None, code: int | None = None,
               detail: str = "") -> FaultSignal:
        with self._lock:
            seq = self._signals[-1].seq + 1 if self._signals else 1
            signal = FaultSignal(seq, node_id, kind, at, device_index, code, detail)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as handle:
                handle.write(json.dumps(_encode(signal)) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            self._signals.append(signal)
            return signal

    def after(self, seq: int) -> list[FaultSignal]:
        with self._lock:
            return [s for s in self._signals if s.seq > seq]


def _encode(signal: FaultSignal) -> dict[str, object]:
    return {"seq": signal.seq, "node": signal.node_id, "kind": signal.kind.value,
            "at": signal.at.isoformat(), "device": signal.device_index, "code": signal.code,
            "detail": signal.detail}


def _decode(data: dict[str, object]) -> FaultSignal:
    device, code = data.get("device"), data.get("code")
    return FaultSignal(
        seq=int(str(data["seq"])),
        node_id=str(data["node"]),
        kind=SignalKind(str(data["kind"])),
        at=datetime.fromisoformat(str(data["at"])),
        device_index=None if device is None else int(str(device)),
        code=None if code is None else int(str(code)),
        detail=str(data.get("detail", "")),
    )
