"""Victim choice: make room on one node for a workload, losing the least work.

The work a victim loses is the time since its last checkpoint (it restarts from there); a
victim that never reported a checkpoint is charged ``unknown_loss_s``. A running gang member is
never evicted alone: its whole gang goes, and the gang's loss is the sum of its members'. Per
node, victims are taken cheapest first until the workload fits, then any victim not needed
after all is spared (dearest first); the node with the least total loss wins, then the one
whose victims have the lowest top priority, then the fewest victims.
Who may be a victim (priority, tenant, quota) is the caller's decision; ``budget`` caps the
milli-GPU taken per tenant (quota reclaim stops once a borrower is back within its quota).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gpucloud.scheduling.decisions import Running
from gpucloud.scheduling.model import Shape
from gpucloud.scheduling.state import ClusterState

VictimUnit = tuple[Running, ...]  # one running workload, or every running member of its gang


def lost_work(r: Running, unknown_loss_s: float) -> float:
    s = r.workload.seconds_since_checkpoint
    return unknown_loss_s if s is None else s


def victim_units(eligible: Sequence[Running], running: Sequence[Running]) -> list[VictimUnit]:
    """Group eligible victims into units; a gang is a unit only if all its members are eligible."""
    gangs: dict[str, list[Running]] = {}
    for r in running:
        if r.workload.gang_id is not None:
            gangs.setdefault(r.workload.gang_id, []).append(r)
    ids = {r.workload.id for r in eligible}
    units: list[VictimUnit] = []
    seen: set[str] = set()
    for r in eligible:
        gang = r.workload.gang_id
        if gang is None:
            units.append((r,))
        elif gang not in seen:
            seen.add(gang)
            members = gangs[gang]
            if all(m.workload.id in ids for m in members):
                units.append(tuple(members))
    return units


@dataclass(frozen=True)
class VictimSet:
    node: int
    victims: tuple[Running, ...]
    lost_s: float


def _fits_after(state: ClusterState, node: int, shape: Shape, freed: Sequence[Running]) -> bool:
    name = state.names[node]
    here = [r.placement for r in freed if r.placement.node == name]
    cpu = int(state.cpu_free[node]) + sum(p.cpu_milli for p in here)
    mem = int(state.mem_free[node]) + sum(p.memory_mib for p in here)
    if not state.healthy[node] or cpu < shape.cpu_milli or mem < shape.memory_mib:
        return False
    if shape.gpu_count == 0:
        return True
    gpu = state.gpu_free[node].copy()
    for p in here:
        for j in p.devices:
            gpu[j] += p.gpu_milli
    usable = state.usable(shape, np.array([node]))[0]
    return int((usable & (gpu >= shape.gpu_milli)).sum()) >= shape.gpu_count


def _flat(units: Sequence[VictimUnit]) -> list[Running]:
    return [r for u in units for r in u]


def choose_victims(state: ClusterState, shape: Shape, units: Sequence[VictimUnit],
                   unknown_loss_s: float,
                   budget: Mapping[str, int] | None = None) -> VictimSet | None:
    """The cheapest set of units whose eviction lets ``shape`` fit on one node, or None."""
    budget = budget or {}

    def loss(u: VictimUnit) -> float:
        return sum(lost_work(r, unknown_loss_s) for r in u)

    def key(u: VictimUnit) -> tuple[float, int, str]:
        return loss(u), max(r.workload.priority for r in u), u[0].workload.id

    on_node: dict[int, list[VictimUnit]] = {}
    for u in units:
        for node in sorted({state.index[r.placement.node] for r in u}):
            on_node.setdefault(node, []).append(u)
    best: tuple[tuple[float, int, int, int], VictimSet] | None = None
    for node, here in sorted(on_node.items()):
        chosen: list[VictimUnit] = []
        spent: dict[str, int] = {}
        for u in sorted(here, key=key):
            tenant = u[0].workload.tenant
            if tenant in budget and spent.get(tenant, 0) >= budget[tenant]:
                continue
            chosen.append(u)
            spent[tenant] = spent.get(tenant, 0) + sum(r.gpu_milli for r in u)
            if _fits_after(state, node, shape, _flat(chosen)):
                break
        else:
            continue
        for u in sorted(chosen, key=key, reverse=True):  # spare the dearest that are not needed
            rest = [v for v in chosen if v is not u]
            if _fits_after(state, node, shape, _flat(rest)):
                chosen = rest
        victims = tuple(_flat(chosen))
        total = sum(loss(u) for u in chosen)
        rank = (total, max(r.workload.priority for r in victims), len(victims), node)
        if best is None or rank < best[0]:
            best = rank, VictimSet(node, victims, total)
    return None if best is None else best[1]
