"""Volume commands and queries on behalf of a caller. ``set_state`` is the only door through
which a volume changes state; its event, and its storage lease, commit with the change."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from gpucloud.billing.leases import LeaseKind
from gpucloud.core.errors import Conflict, NotFound
from gpucloud.core.ids import IdFactory
from gpucloud.core.states import TERMINAL
from gpucloud.core.tenancy import Principal
from gpucloud.core.volumes import (
    VolumeMount,
    VolumeState,
    check_grow,
    check_quota,
    check_volume_transition,
)
from gpucloud.store.leases import end_leases, open_lease, resize_lease
from gpucloud.store.models import Event, Job
from gpucloud.store.models_instances import Instance
from gpucloud.store.models_workspaces import Volume, VolumeQuota
from gpucloud.store.paging import Page, paginate
from gpucloud.store.settings import get_setting
from gpucloud.store.transitions import record_event

OBJECT_KIND = "volume"
LEASE_ITEM = "volume"


def quota_gib(session: Session, tenant_id: str) -> int:
    """The tenant's own quota if the operator set one, else ``storage.volume_quota_gib``."""
    own = session.get(VolumeQuota, tenant_id)
    return own.gib if own is not None else int(get_setting(session, "storage.volume_quota_gib"))


def set_quota(session: Session, tenant_id: str, gib: int | None, who: str,
              now: datetime) -> None:
    """``None``: back to the platform's default."""
    row = session.get(VolumeQuota, tenant_id)
    if gib is None:
        if row is not None:
            session.delete(row)
        return
    if row is None:
        row = VolumeQuota(tenant_id=tenant_id)
        session.add(row)
    row.gib, row.updated_by, row.updated_at = gib, who, now


def tenant_gib(session: Session, tenant_id: str) -> int:
    """GiB of the tenant's living volumes (what the quota counts)."""
    total = session.scalar(
        select(func.coalesce(func.sum(Volume.size_gib), 0)).where(
            Volume.tenant_id == tenant_id, Volume.state != VolumeState.DELETED)
    )
    return int(total or 0)


def create_volume(session: Session, ids: IdFactory, who: Principal, name: str, size_gib: int,
                  now: datetime) -> Volume:
    taken = session.scalar(
        select(Volume.id).where(Volume.tenant_id == who.tenant_id, Volume.live_name == name))
    if taken is not None:
        raise Conflict(f"a volume named {name!r} already exists ({taken}); choose another name "
                       "or delete that one")
    check_quota(tenant_gib(session, who.tenant_id), size_gib, quota_gib(session, who.tenant_id))
    volume = Volume(
        id=ids.new("vol", now), tenant_id=who.tenant_id, name=name, live_name=name,
        size_gib=size_gib, state=VolumeState.AVAILABLE, used_bytes=None, measured_at=None,
        created_by=who.user_name, created_at=now, updated_at=now,
    )
    session.add(volume)
    record_event(session, at=now, object_kind=OBJECT_KIND, object_id=volume.id,
                 kind="volume.state", tenant_id=who.tenant_id,
                 after=VolumeState.AVAILABLE.value, reason="CREATED",
                 message=f"{size_gib} GiB, created by {who.user_name}")
    session.flush()
    open_lease(session, lease_id=ids.new("lse", now), tenant_id=who.tenant_id,
               kind=LeaseKind.STORAGE, ref_id=volume.id, item=LEASE_ITEM, quantity=size_gib,
               at=now)
    return volume


def _visible(who: Principal) -> Select[Any]:
    query = select(Volume)
    return query if who.is_operator else query.where(Volume.tenant_id == who.tenant_id)


def get_volume(session: Session, who: Principal, ref: str) -> Volume:
    """By id, or by name among the caller's living volumes. Another tenant's is a 404."""
    found: Volume | None = session.scalar(
        _visible(who).where(
            or_(Volume.id == ref,
                (Volume.live_name == ref) & (Volume.tenant_id == who.tenant_id)))
    )
    if found is None:
        raise NotFound("volume", ref)
    return found


def list_volumes(session: Session, who: Principal, limit: int, cursor: str | None,
                 include_deleted: bool = False) -> Page[Volume]:
    query = _visible(who)
    if not include_deleted:
        query = query.where(Volume.state != VolumeState.DELETED)
    return paginate(session, query, Volume.id, limit, cursor)


def latest_events(session: Session, volume_id: str, limit: int) -> list[Event]:
    rows = session.scalars(
        select(Event).where(Event.object_kind == OBJECT_KIND, Event.object_id == volume_id)
        .order_by(Event.id.desc()).limit(limit))
    return list(reversed(list(rows)))


def set_state(session: Session, volume: Volume, to: VolumeState, reason: str, now: datetime,
              message: str = "") -> None:
    current = VolumeState(volume.state)
    check_volume_transition(volume.id, current, to)
    record_event(session, at=now, object_kind=OBJECT_KIND, object_id=volume.id,
                 kind="volume.state", tenant_id=volume.tenant_id, before=current.value,
                 after=to.value, reason=reason, message=message)
    volume.state, volume.updated_at = to, now
    if to is VolumeState.DELETED:
        volume.deleted_at, volume.live_name = now, None
        end_leases(session, volume.id, now)


def _require_living(volume: Volume) -> None:
    if volume.state is VolumeState.DELETED:
        raise Conflict(f"volume {volume.name} is deleted")


def grow_volume(session: Session, ids: IdFactory, volume: Volume, size_gib: int,
                now: datetime) -> None:
    """Bigger only; billed at the new size from now on. A full volume that now has room is
    available again at once."""
    _require_living(volume)
    check_grow(volume.name, volume.size_gib, size_gib)
    check_quota(tenant_gib(session, volume.tenant_id), size_gib - volume.size_gib,
                quota_gib(session, volume.tenant_id))
    before = volume.size_gib
    volume.size_gib, volume.updated_at = size_gib, now
    resize_lease(session, lease_id=ids.new("lse", now), ref_id=volume.id, quantity=size_gib,
                 at=now)
    record_event(session, at=now, object_kind=OBJECT_KIND, object_id=volume.id,
                 kind="volume.grown", tenant_id=volume.tenant_id, reason="GROWN",
                 message=f"{before} GiB -> {size_gib} GiB")
    if volume.state is VolumeState.FULL and (volume.used_bytes or 0) <= size_gib * 1024**3:
        set_state(session, volume, VolumeState.AVAILABLE, "GROWN",
                  now, f"has room again at {size_gib} GiB")


def holders(session: Session, volume: Volume) -> list[str]:
    """Workloads that hold the volume: unfinished jobs that mount it, and living instances
    (stopped ones too: they mount it again when started)."""
    held = []
    jobs = session.scalars(
        select(Job).where(Job.tenant_id == volume.tenant_id, Job.state.not_in(list(TERMINAL)))
        .order_by(Job.id))
    for job in jobs:
        if any(m.split(":", 1)[0] == volume.name for m in job.spec.get("volumes", [])):
            held.append(f"job {job.id} ({job.state.value.lower()})")
    instances = session.scalars(
        select(Instance).where(Instance.tenant_id == volume.tenant_id,
                               Instance.live_name.is_not(None)).order_by(Instance.id))
    for instance in instances:
        if any(m.split(":", 1)[0] == volume.name for m in instance.spec.get("volumes", [])):
            held.append(f"instance {instance.name} ({instance.state.value.lower()})")
    return held


def delete_volume(session: Session, volume: Volume, who: Principal, now: datetime) -> None:
    """Only when no workload holds it; billing ends now and its directory is removed by
    ``controllers.volume_usage``."""
    _require_living(volume)
    _lock(session, volume.id)
    held = holders(session, volume)
    if held:
        raise Conflict(f"volume {volume.name} is attached to {', '.join(held)}; stop or "
                       "delete those first, then delete the volume")
    set_state(session, volume, VolumeState.DELETED, "DELETED_BY_USER", now,
              f"deleted by {who.user_name}")


def _lock(session: Session, volume_id: str) -> None:
    """Row lock (PostgreSQL): an attach and a delete of one volume are serialised."""
    session.scalar(select(Volume.id).where(Volume.id == volume_id).with_for_update())


def resolve_mounts(session: Session, tenant_id: str, mounts: Sequence[VolumeMount],
                   lock: bool = False, refuse_full: bool = True
                   ) -> list[tuple[VolumeMount, Volume]]:
    """The tenant's living volume behind each mount; a missing one is a 404 naming it, a full
    one a 409 (no new attachments until it is grown or emptied). ``lock``: hold the rows
    (PostgreSQL) so that a concurrent delete waits for this transaction."""
    found = []
    for mount in mounts:
        query = select(Volume).where(Volume.tenant_id == tenant_id,
                                     Volume.live_name == mount.name)
        volume = session.scalar(query.with_for_update() if lock else query)
        if volume is None:
            raise NotFound("volume", mount.name)
        if refuse_full and volume.state is VolumeState.FULL:
            used = (volume.used_bytes or 0) / 1024**3
            raise Conflict(f"volume {volume.name} is full ({used:.1f} GiB used of "
                           f"{volume.size_gib} GiB): grow it or free space before attaching it")
        found.append((mount, volume))
    return found
