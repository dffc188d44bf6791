"""Bare-metal servers and leases in the database. ``set_state`` is the only door through which
a server changes state: its event, and what the new state means for the lease and its billing,
commit with it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from gpucloud.billing.leases import LeaseKind
from gpucloud.billing.pricing import PriceVersion
from gpucloud.core.baremetal import (
    HELD,
    NOT_SCHEDULABLE,
    BareMetalState,
    Candidate,
    Progress,
    check_transition,
)
from gpucloud.core.errors import Conflict, InvalidRequest, NotFound
from gpucloud.core.fleet import AssetKind
from gpucloud.core.ids import IdFactory
from gpucloud.core.tenancy import Principal
from gpucloud.engines.redfish import BmcAccess
from gpucloud.store.assets import FleetPlaces
from gpucloud.store.leases import end_leases, open_lease, open_lease_of
from gpucloud.store.models import Allocation, Tenant
from gpucloud.store.models_fleet import (
    Asset,
    BareMetalLease,
    BareMetalServer,
    BmcCredential,
    BootImage,
    WipeAttestation,
)
from gpucloud.store.sealed import Sealer
from gpucloud.store.transitions import record_event

OBJECT_KIND = "baremetal"
_B = BareMetalState
WIPE_METHOD = "wipe image booted from virtual media"
_LEASE_IDS = IdFactory()


# -- the servers -----------------------------------------------------------------------------


def unsynced(session: Session) -> list[str]:
    """Live servers the register marks bare metal that have no lifecycle row yet."""
    have = set(session.scalars(select(BareMetalServer.asset_id)))
    return [asset_id for asset_id in session.scalars(select(Asset.id).where(
        Asset.kind == AssetKind.SERVER, Asset.baremetal, Asset.retired_at.is_(None)))
        if asset_id not in have]


def sync_servers(session: Session, now: datetime) -> None:
    """A row for every live server the register marks bare metal (available at first);
    level-triggered: run before any pass that reads them."""
    for asset_id in unsynced(session):
        session.add(BareMetalServer(asset_id=asset_id, state=_B.AVAILABLE, reason="",
                                    image="", progress={}, state_since=now, updated_at=now))
    session.flush()


def servers(session: Session) -> list[tuple[Asset, BareMetalServer]]:
    """Every bare-metal server of the register that is not retired, by name."""
    return [(a, s) for a, s in session.execute(
        select(Asset, BareMetalServer).join(BareMetalServer, BareMetalServer.asset_id == Asset.id)
        .where(Asset.retired_at.is_(None), Asset.baremetal).order_by(Asset.name))]


def find_server(session: Session, name: str) -> tuple[Asset, BareMetalServer]:
    for asset, server in servers(session):
        if name.lower() in (asset.name, asset.id):
            return asset, server
    raise NotFound("bare-metal server", name)


def busy_nodes(session: Session) -> set[str]:
    """Engine nodes where jobs hold resources now."""
    return set(session.scalars(select(Allocation.node_id).where(Allocation.active)))


def unschedulable_nodes(session: Session, places: FleetPlaces) -> set[str]:
    """Engine nodes the scheduler must not use: their server is leased whole, being set up
    for a tenant, wiped, or in maintenance."""
    held = set(session.scalars(select(Asset.name).join(
        BareMetalServer, BareMetalServer.asset_id == Asset.id).where(
        BareMetalServer.state.in_([s.value for s in NOT_SCHEDULABLE]))))
    return {node for node, server in places.server_of.items() if server in held}


def candidates(session: Session, version: PriceVersion | None, places: FleetPlaces
               ) -> list[Candidate]:
    busy = busy_nodes(session)
    return [Candidate(a.name, a.model, s.state, places.node_of(a.name) in busy,
                      version is not None and version.server_hour.get(a.model, 0) > 0)
            for a, s in servers(session)]


def set_state(session: Session, asset: Asset, server: BareMetalServer, to: BareMetalState,
              now: datetime, reason: str = "", message: str = "") -> None:
    """The only door: checked against the table, recorded as an event, progress reset."""
    check_transition(asset.name, server.state, to)
    record_event(session, at=now, object_kind=OBJECT_KIND, object_id=asset.id,
                 kind="baremetal.state", tenant_id=server.tenant_id, before=server.state.value,
                 after=to.value, reason=reason, message=message)
    server.state, server.progress, server.state_since, server.updated_at = (
        to, Progress().to_json(), now, now)
    server.reason = message if to is _B.MAINTENANCE else ""
    if to is _B.CLEANING:
        server.wipe_started_at = None


def lock(session: Session, server: BareMetalServer) -> None:
    """Re-read the row under a row lock (PostgreSQL; SQLite serialises writers anyway), so
    that two writers never both act on the state they read."""
    session.refresh(server, with_for_update=True)


def save_progress(server: BareMetalServer, done: Progress, now: datetime) -> None:
    server.progress, server.updated_at = done.to_json(), now


# -- leases ------------------------------------------------------------------------------------


def lease_server(session: Session, ids: IdFactory, who: Principal, asset: Asset,
                 server: BareMetalServer, image: BootImage, now: datetime) -> BareMetalLease:
    """The tenant holds the server from now; billing starts once it is provisioned."""
    lock(session, server)
    if server.state is not _B.AVAILABLE:  # taken by a concurrent lease meanwhile
        raise Conflict(f"{asset.name} was just taken ({server.state.value}); try again")
    lease = BareMetalLease(id=ids.new("bml", now), tenant_id=who.tenant_id, asset_id=asset.id,
                           image=image.name, created_by=who.user_name, created_at=now,
                           leased_at=None, ended_at=None, reason="")
    session.add(lease)
    server.tenant_id, server.lease_id, server.image = who.tenant_id, lease.id, image.name
    set_state(session, asset, server, _B.PROVISIONING, now, "LEASE",
              f"leased by {who.user_name} ({who.tenant_name}) with image {image.name}")
    session.flush()
    return lease


def mark_leased(session: Session, asset: Asset, server: BareMetalServer, now: datetime) -> None:
    """Provisioned: the tenant has it, and pays for it by the hour from now (once)."""
    set_state(session, asset, server, _B.LEASED, now, "PROVISIONED",
              f"booted {server.image}")
    lease = session.get_one(BareMetalLease, server.lease_id)
    if lease.leased_at is None:
        lease.leased_at = now
    if open_lease_of(session, lease.id) is None:
        open_lease(session, lease_id=_LEASE_IDS.new("lse", now), tenant_id=lease.tenant_id,
                   kind=LeaseKind.SERVER, ref_id=lease.id, item=asset.model, quantity=1, at=now)


def end_lease(session: Session, lease: BareMetalLease, now: datetime, reason: str) -> None:
    """Billing stops now; the server is no longer the tenant's to use."""
    if lease.ended_at is None:
        lease.ended_at, lease.reason = now, reason
    end_leases(session, lease.id, now)


def release(session: Session, asset: Asset, server: BareMetalServer, lease: BareMetalLease,
            who: str, now: datetime) -> None:
    """The tenant gives the server back: billing stops, then it is powered off and wiped."""
    lock(session, server)
    if lease.ended_at is not None:
        return  # released already: idempotent
    end_lease(session, lease, now, f"released by {who}")
    if server.lease_id == lease.id and server.state in HELD:
        set_state(session, asset, server, _B.RELEASING, now, "RELEASE", f"released by {who}")


def reimage(session: Session, asset: Asset, server: BareMetalServer, lease: BareMetalLease,
            image: BootImage, who: str, now: datetime) -> None:
    lock(session, server)
    held(lease, server)
    if server.state is _B.PROVISIONING and server.image == image.name:
        return  # asked twice: idempotent
    if server.state is not _B.LEASED:
        raise Conflict(f"{asset.name} is {server.state.value}; reimage it once it is leased")
    server.image = image.name
    lease.image = image.name
    set_state(session, asset, server, _B.PROVISIONING, now, "REIMAGE",
              f"reimage with {image.name} by {who}")


def to_maintenance(session: Session, asset: Asset, server: BareMetalServer, why: str,
                   now: datetime) -> None:
    """A step failed: out of service with the reason. A tenant still holding it stops paying;
    a wipe that failed is attested as failed."""
    was = server.state
    if server.lease_id is not None:
        lease = session.get_one(BareMetalLease, server.lease_id)
        if was in HELD:  # the tenant is told what happened, not the BMC's address or reply
            end_lease(session, lease, now, f"failed: the server could not be {_DOING[was]}; "
                      "it is out of service and no longer billed")
    if was is _B.CLEANING:
        attest(session, asset, server, "failed", why, now)
    set_state(session, asset, server, _B.MAINTENANCE, now, "STEP_FAILED", why)


_DOING = {_B.PROVISIONING: "provisioned", _B.LEASED: "kept running"}


def finish_cleaning(session: Session, asset: Asset, server: BareMetalServer, image: str,
                    now: datetime) -> None:
    attest(session, asset, server, "erased", f"{WIPE_METHOD}: {image}; powered itself off "
           "when done", now)
    server.tenant_id, server.lease_id, server.image = None, None, ""
    set_state(session, asset, server, _B.AVAILABLE, now, "CLEANED", "disks wiped")


def attest(session: Session, asset: Asset, server: BareMetalServer, outcome: str, detail: str,
           now: datetime) -> None:
    session.add(WipeAttestation(asset_id=asset.id, tenant_id=server.tenant_id,
                                method=WIPE_METHOD, started_at=server.wipe_started_at or now,
                                finished_at=now, outcome=outcome, detail=detail))


def return_server(session: Session, asset: Asset, server: BareMetalServer, who: str,
                  now: datetime) -> None:
    """An operator puts a server in maintenance back: it is wiped first (a tenant's data may
    still be on it), then available."""
    if server.state is not _B.MAINTENANCE:
        raise Conflict(f"{asset.name} is {server.state.value}; only a server in maintenance "
                       "can be returned")
    set_state(session, asset, server, _B.CLEANING, now, "RETURNED", f"returned by {who}")


def held(lease: BareMetalLease, server: BareMetalServer) -> None:
    if lease.ended_at is not None or server.lease_id != lease.id:
        raise Conflict(f"lease {lease.id} has ended ({lease.reason})")


def visible_leases(who: Principal) -> Select[Any]:
    query = select(BareMetalLease)
    return query if who.is_operator else query.where(BareMetalLease.tenant_id == who.tenant_id)


def find_lease(session: Session, who: Principal, ref: str) -> BareMetalLease:
    """By lease id, or by the server's name for the tenant holding it; another tenant's
    lease is a 404."""
    found: BareMetalLease | None = session.scalar(
        visible_leases(who).where(BareMetalLease.id == ref))
    if found is None:
        found = session.scalar(
            visible_leases(who).join(Asset, Asset.id == BareMetalLease.asset_id)
            .where(Asset.name == ref.lower(), BareMetalLease.ended_at.is_(None),
                   BareMetalLease.tenant_id == who.tenant_id))
    if found is None:
        raise NotFound("bare-metal lease", ref)
    return found


def pays(session: Session, tenant_id: str) -> bool:
    tenant = session.get(Tenant, tenant_id)
    return tenant is not None and not tenant.is_operator


# -- BMC access and images -------------------------------------------------------------------


def access_of(session: Session, asset: Asset, sealer: Sealer) -> BmcAccess:
    login = session.get(BmcCredential, asset.id)
    return BmcAccess(asset.name, asset.bmc_address, login.username if login else None,
                     sealer.unseal(login.password) if login else None)


def set_credentials(session: Session, asset: Asset, username: str, password: str, who: str,
                    now: datetime, sealer: Sealer) -> None:
    if asset.kind is not AssetKind.SERVER:
        raise InvalidRequest(f"{asset.name} is a {asset.kind.value}; only servers have a BMC",
                             "name")
    login = session.get(BmcCredential, asset.id)
    if login is None:
        session.add(BmcCredential(asset_id=asset.id, username=username,
                                  password=sealer.seal(password), updated_at=now))
    else:
        login.username, login.password, login.updated_at = username, sealer.seal(password), now
    record_event(session, at=now, object_kind="asset", object_id=asset.id,
                 kind="asset.bmc_login", tenant_id=None,
                 message=f"BMC login for {username} set by {who}")  # never the password


def image_for(session: Session, name: str | None) -> BootImage:
    """The OS image a lease boots: the one named, or the only one there is."""
    images = list(session.scalars(select(BootImage).where(BootImage.purpose == "os")
                                  .order_by(BootImage.name)))
    if name is not None:
        found = next((i for i in images if i.name == name), None)
        if found is None:
            raise InvalidRequest(f"no OS image {name!r}; images: "
                                 + (", ".join(i.name for i in images) or "none"), "image")
        return found
    if len(images) == 1:
        return images[0]
    if not images:
        raise InvalidRequest("no OS image is registered yet; an operator adds one with "
                             "'gpucloud baremetal image add NAME URL'", "image")
    raise InvalidRequest("name the image (--image): " + ", ".join(i.name for i in images),
                         "image")


def wipe_image(session: Session) -> BootImage | None:
    return session.scalar(select(BootImage).where(BootImage.purpose == "wipe")
                          .order_by(BootImage.name).limit(1))


def put_image(session: Session, name: str, url: str, purpose: str, now: datetime) -> BootImage:
    if purpose not in ("os", "wipe"):
        raise InvalidRequest(f"purpose {purpose!r}: write os or wipe", "purpose")
    if not url.startswith(("http://", "https://")):
        raise InvalidRequest(f"{url!r}: write the image's http(s) URL (the BMC fetches it)",
                             "url")
    image = session.get(BootImage, name)
    if image is None:
        image = BootImage(name=name, url=url, purpose=purpose, created_at=now)
        session.add(image)
    else:
        image.url, image.purpose = url, purpose
    session.flush()
    return image


@dataclass(frozen=True)
class Work:
    """One server the controller has BMC work for, as read in one transaction."""

    asset_id: str
    name: str
    state: BareMetalState
    progress: Progress
    state_since: datetime
    access: BmcAccess
    image_url: str | None  # what to boot in this state (None: nothing to boot, or unknown)
    image_name: str


def work(session: Session, working: frozenset[BareMetalState], sealer: Sealer) -> list[Work]:
    wipe = wipe_image(session)
    found = []
    for asset, server in servers(session):
        if server.state not in working:
            continue
        if server.state is _B.CLEANING:
            image = wipe
        else:
            image = session.get(BootImage, server.image) if server.image else None
        found.append(Work(asset.id, asset.name, server.state,
                          Progress.from_json(server.progress), server.state_since,
                          access_of(session, asset, sealer), image.url if image else None,
                          image.name if image else ""))
    return found
