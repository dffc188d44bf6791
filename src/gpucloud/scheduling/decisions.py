"""What the queueing layer reads besides the snapshot (running work) and what it decides.

Every refusal carries a machine-readable reason (an Enum) next to a message for people, so that
the API can group waiting jobs by cause while the CLI prints the sentence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from gpucloud.scheduling.model import Placement, Workload


class WaitReason(Enum):
    NO_FIT = "no-fit"  # no node can take it now, and preemption did not help
    GANG_INCOMPLETE = "gang-incomplete"  # fewer members queued than the gang's size
    GANG_NO_DOMAIN = "gang-no-domain"  # no allowed topology domain takes the whole gang
    OVER_QUOTA = "over-quota"  # beyond its tenant's quota and no idle quota to borrow
    RESERVED = "reserved"  # it would delay the reservation held by a job ahead of it


class PreemptReason(Enum):
    PRIORITY = "priority"  # a strictly higher-priority workload needs the room
    QUOTA_RECLAIM = "quota-reclaim"  # the victim's tenant borrows quota its owner now needs


@dataclass(frozen=True)
class Running:
    """A workload the snapshot already accounts for (its resources are not free)."""

    workload: Workload
    placement: Placement
    remaining_s: float | None = None  # until its time limit; None: unknown, may run forever

    @property
    def gpu_milli(self) -> int:
        return self.placement.gpu_milli * len(self.placement.devices)


@dataclass(frozen=True)
class Waiting:
    workload_id: str
    reason: WaitReason
    message: str


@dataclass(frozen=True)
class Preemption:
    workload_id: str  # the victim
    node: str
    reason: PreemptReason
    for_workload: str  # the preemptor
    lost_s: float  # the victim's time since its last checkpoint (work redone after restart)
    message: str


@dataclass(frozen=True)
class Reservation:
    """Where the first blocked job stands: it can start in ``start_in_s`` once running jobs
    reach their time limits; nothing placed after it may push that back."""

    workload_ids: tuple[str, ...]
    start_in_s: float
    message: str


@dataclass(frozen=True)
class SchedulePlan:
    placements: tuple[Placement, ...]
    preemptions: tuple[Preemption, ...] = ()
    waiting: tuple[Waiting, ...] = ()
    reservation: Reservation | None = None
    gang_levels: dict[str, str] = field(default_factory=dict)  # gang id -> domain level used
