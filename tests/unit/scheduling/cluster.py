"""Builders for hand-made clusters with work already running on them."""

from __future__ import annotations

from collections.abc import Sequence

from gpucloud.scheduling.decisions import Running
from gpucloud.scheduling.model import (
    MILLI,
    ClusterSnapshot,
    Device,
    Node,
    Topology,
    TopologyRequirement,
    Workload,
)
from gpucloud.scheduling.state import ClusterState


def node(name: str, gpus: int = 8, model: str = "G2", island: str = "", leaf: str = "",
         rack: str = "", cpu: int = 96_000, mem: int = 393_216) -> Node:
    return Node(name, cpu, mem, tuple(Device(j, model) for j in range(gpus)),
                topology=Topology(island, leaf, rack))


def job(wid: str, gpus: int = 1, milli: int = MILLI, tenant: str = "", priority: int = 0,
        gang: str | None = None, size: int = 1, ckpt: float | None = None,
        limit: float | None = None, require: str | None = None, cpu: int = 1000,
        models: frozenset[str] | None = None) -> Workload:
    return Workload(wid, cpu, 1024, gpus, milli if gpus else 0, models, priority, tenant, gang,
                    size, TopologyRequirement(require=require) if require else None, ckpt, limit)


def gang(gid: str, members: int, gpus: int, **kw: object) -> list[Workload]:
    return [job(f"{gid}-{k}", gpus, gang=gid, size=members, **kw)  # type: ignore[arg-type]
            for k in range(members)]


def snapshot_of(nodes: Sequence[Node], state: ClusterState) -> ClusterSnapshot:
    """The nodes as ``state`` leaves them (free CPU, memory and milli-GPU per device)."""
    out = []
    for i, n in enumerate(nodes):
        devices = tuple(Device(d.index, d.model, int(state.gpu_free[i, j]), d.healthy)
                        for j, d in enumerate(n.devices))
        out.append(Node(n.name, n.cpu_milli, n.memory_mib, devices, int(state.cpu_free[i]),
                        int(state.mem_free[i]), n.healthy, n.labels, n.topology))
    return ClusterSnapshot(tuple(out))


def running_on(nodes: Sequence[Node], placed: Sequence[tuple[Workload, str, float | None]]
               ) -> tuple[ClusterSnapshot, list[Running]]:
    """Claim each (workload, node name, remaining seconds) and snapshot the result."""
    state = ClusterState(nodes)
    running = []
    for w, name, remaining in placed:
        i = state.index[name]
        running.append(Running(w, state.claim(i, w, state.choose_devices(i, w.shape)), remaining))
    return snapshot_of(nodes, state), running
