"""Hardware faults and what to do about them: signals, the XID policy table, and the decision
for one signal (pure: the health controller applies it).

The default table follows the resolution buckets of NVIDIA's Xid catalogue
(docs.nvidia.com/deploy/xid-errors): RESTART_APP codes are the application's own fault, RESET_GPU
codes take the GPU out until it is reset and checked, node-level codes (RESTART_BM, a GPU that
fell off the bus) take the whole node out. Operators edit the table (``gpucloud admin
xid-policy``); a code that is in no table drains the node and raises an alert, because guessing
wrong in the other direction puts a tenant's job back on broken hardware.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from gpucloud.core.errors import InvalidRequest


class SignalKind(StrEnum):
    XID = "xid"  # a driver Xid event (code = the Xid)
    ECC = "ecc"  # uncorrectable ECC errors rose (volatile or aggregate)
    HEARTBEAT_LOSS = "heartbeat-loss"  # the node stopped reporting
    NODE_DOWN = "node-down"  # the engine itself reports the node down (Slurm DOWN)
    THERMAL = "thermal"  # temperature or power beyond its limit (code = degrees C or watts)
    NVLINK = "nvlink"  # NVLink error counters rose
    EXIT_HINT = "exit-hint"  # a failed job's last lines mention a CUDA/NCCL error: a hint only
    RETIRED_PAGES = "retired-pages"  # pages retired or rows remapped: pending a reset


class FaultAction(StrEnum):
    APPLICATION = "application"  # the job's own fault: no quarantine, no credit
    RESET_GPU = "reset-gpu"  # quarantine the GPU, stop its jobs, burn in, return
    DRAIN_NODE = "drain-node"  # quarantine the node, stop its jobs, burn in, return
    OBSERVE = "observe"  # record it; nothing stops


@dataclass(frozen=True)
class FaultSignal:
    """One observation from an engine. ``seq`` orders an engine's signals (exactly-once
    handling keeps a cursor on it)."""

    seq: int
    node_id: str
    kind: SignalKind
    at: datetime
    device_index: int | None = None
    code: int | None = None
    detail: str = ""


# Xid -> (action, what it means). Codes not listed here are unknown.
DEFAULT_XID_POLICY: Mapping[int, tuple[FaultAction, str]] = {
    8: (FaultAction.APPLICATION, "GPU stopped processing (idle timeout)"),
    13: (FaultAction.APPLICATION, "graphics engine exception"),
    31: (FaultAction.APPLICATION, "GPU memory page fault"),
    32: (FaultAction.APPLICATION, "invalid or corrupted push buffer stream"),
    43: (FaultAction.APPLICATION, "GPU stopped processing"),
    45: (FaultAction.APPLICATION, "preemptive cleanup after earlier errors"),
    68: (FaultAction.APPLICATION, "video processor exception"),
    69: (FaultAction.APPLICATION, "graphics engine class error"),
    38: (FaultAction.RESET_GPU, "driver firmware error"),
    48: (FaultAction.RESET_GPU, "double-bit ECC error"),
    61: (FaultAction.RESET_GPU, "internal micro-controller breakpoint or warning"),
    62: (FaultAction.RESET_GPU, "internal micro-controller halt"),
    63: (FaultAction.RESET_GPU, "ECC page retirement or row remapping recorded: reset to apply"),
    74: (FaultAction.RESET_GPU, "NVLink error"),
    92: (FaultAction.RESET_GPU, "high single-bit ECC error rate"),
    94: (FaultAction.RESET_GPU, "contained ECC error"),
    95: (FaultAction.RESET_GPU, "uncontained ECC error"),
    119: (FaultAction.RESET_GPU, "GSP RPC timeout"),
    120: (FaultAction.RESET_GPU, "GSP error"),
    140: (FaultAction.RESET_GPU, "unrecovered ECC error"),
    46: (FaultAction.DRAIN_NODE, "GPU stopped processing (service required)"),
    64: (FaultAction.DRAIN_NODE, "ECC page retirement or row remapper recording failure"),
    79: (FaultAction.DRAIN_NODE, "GPU has fallen off the bus"),
    154: (FaultAction.DRAIN_NODE, "GPU recovery action changed: node reboot required"),
}

# What the other kinds of signal call for.
KIND_ACTIONS: Mapping[SignalKind, tuple[FaultAction, str]] = {
    SignalKind.ECC: (FaultAction.RESET_GPU, "uncorrectable ECC errors"),
    SignalKind.HEARTBEAT_LOSS: (FaultAction.DRAIN_NODE, "the node stopped reporting"),
    SignalKind.NODE_DOWN: (FaultAction.DRAIN_NODE, "the engine reports the node down"),
    SignalKind.THERMAL: (FaultAction.OBSERVE, "temperature or power beyond its limit"),
    SignalKind.NVLINK: (FaultAction.RESET_GPU, "NVLink errors"),
    SignalKind.RETIRED_PAGES: (FaultAction.OBSERVE, "retired pages pending a reset"),
    SignalKind.EXIT_HINT: (FaultAction.OBSERVE, "a failed job's output mentions a GPU error"),
}


@dataclass(frozen=True)
class FaultDecision:
    action: FaultAction
    scope: str  # "gpu" or "node": what is quarantined (nothing for application/observe)
    description: str  # "Xid 79: GPU has fallen off the bus"
    alert: bool  # an operator should look (unknown codes)

    @property
    def stops_jobs(self) -> bool:
        return self.action in (FaultAction.RESET_GPU, FaultAction.DRAIN_NODE)


def classify(signal: FaultSignal, xid_policy: Mapping[int, tuple[FaultAction, str]]) -> (
        FaultDecision):
    """What one signal calls for. A GPU-level action without a known GPU widens to the node."""
    if signal.kind is SignalKind.XID:
        if signal.code is None or signal.code not in xid_policy:
            what = f"Xid {signal.code}: not in the policy table"
            return FaultDecision(FaultAction.DRAIN_NODE, "node", what, alert=True)
        action, meaning = xid_policy[signal.code]
        description = f"Xid {signal.code}: {meaning}"
    else:
        action, meaning = KIND_ACTIONS[signal.kind]
        description = meaning if not signal.detail else f"{meaning} ({signal.detail})"
    scope = "node" if action is FaultAction.DRAIN_NODE else "gpu"
    if scope == "gpu" and signal.device_index is None and action is FaultAction.RESET_GPU:
        scope = "node"
    return FaultDecision(action, scope, description, alert=False)


def parse_xid_policy(data: object) -> dict[int, tuple[FaultAction, str]]:
    """An operator's table, as YAML/JSON ``{79: drain-node, 13: {action: application,
    meaning: ...}}``; every error names the entry to fix."""
    if not isinstance(data, Mapping):
        raise InvalidRequest("an Xid policy is a mapping of Xid code to action", "policy")
    table: dict[int, tuple[FaultAction, str]] = {}
    actions = ", ".join(a.value for a in FaultAction)
    for raw_code, entry in data.items():
        try:
            code = int(raw_code)
        except (TypeError, ValueError):
            raise InvalidRequest(f"Xid {raw_code!r}: the key must be a number", "policy") from None
        if not 0 < code < 100_000:
            raise InvalidRequest(f"Xid {code}: out of range", "policy")
        meaning = DEFAULT_XID_POLICY.get(code, (None, "operator-defined"))[1]
        if isinstance(entry, Mapping):
            raw_action, meaning = entry.get("action"), str(entry.get("meaning", meaning))
        else:
            raw_action = entry
        try:
            action = FaultAction(str(raw_action))
        except ValueError:
            raise InvalidRequest(
                f"Xid {code}: unknown action {raw_action!r}; one of {actions}", "policy"
            ) from None
        table[code] = (action, meaning)
    return table


def policy_document(table: Mapping[int, tuple[FaultAction, str]]) -> dict[int, dict[str, str]]:
    """The table as the API and files write it."""
    return {code: {"action": action.value, "meaning": meaning}
            for code, (action, meaning) in sorted(table.items())}


# What the last lines of a failed job say when a GPU or the fabric may be to blame. A hint is
# recorded for operators (patterns across jobs point at hardware), never acted on alone: the
# same words appear when the job's own code is wrong.
_HINTS = (
    re.compile(r"CUDA error[^\n]*", re.IGNORECASE),
    re.compile(r"NCCL (?:error|WARN)[^\n]*", re.IGNORECASE),
    re.compile(r"nccl\w*Error[^\n]*"),
    re.compile(r"an illegal memory access was encountered[^\n]*"),
    re.compile(r"uncorrectable ECC error[^\n]*", re.IGNORECASE),
    re.compile(r"Xid[ :]+\d+[^\n]*"),
    re.compile(r"watchdog caught collective operation timeout[^\n]*", re.IGNORECASE),
)


def exit_hint(tail: str) -> str | None:
    """The hint in the last line of ``tail`` that has one (from its first match on), or None."""
    for line in reversed(tail.splitlines()):
        starts = [m.start() for p in _HINTS if (m := p.search(line)) is not None]
        if starts:
            return line[min(starts):].strip()[:200]
    return None
