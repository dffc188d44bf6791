"""/v1/baremetal: servers leased whole (list, lease, power, reimage, release), the boot images
they take, and operators' return of a server from maintenance; BMC logins of the register's
servers at /v1/assets/NAME/bmc-credentials. The lifecycle is carried out by
``controllers.baremetal``; power actions on a leased server go to its BMC from here."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header, Query
from fastapi.responses import JSONResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gpucloud.api import idempotent
from gpucloud.api.deps import PlatformDep, PrincipalDep
from gpucloud.api.routes.assets import asset_out
from gpucloud.api.routing import api_router
from gpucloud.billing.money import Money
from gpucloud.billing.pricing import PriceVersion, version_at
from gpucloud.core.baremetal import (
    BareMetalState,
    Candidate,
    PowerAction,
    Refusal,
    lease_shortfall_minor,
    pick_server,
)
from gpucloud.core.errors import Conflict, InsufficientFunds, InvalidRequest
from gpucloud.core.tenancy import Principal, Role
from gpucloud.engines.redfish import Bmc, BmcError
from gpucloud.schemas import Page
from gpucloud.schemas.fleet import (
    AssetOut,
    BareMetalLeaseIn,
    BareMetalLeaseOut,
    BareMetalServerOut,
    BmcCredentialsIn,
    BootImageIn,
    BootImageOut,
    MaintenanceIn,
    PowerIn,
    ReimageIn,
)
from gpucloud.store import baremetal as store
from gpucloud.store.assets import find_asset, fleet_places
from gpucloud.store.billing import holdings
from gpucloud.store.models import MeteredLease
from gpucloud.store.models_fleet import Asset, BareMetalLease, BareMetalServer, BootImage
from gpucloud.store.paging import paginate
from gpucloud.store.prices import load_versions
from gpucloud.store.settings import get_setting
from gpucloud.store.transitions import record_event

router = api_router(tags=["baremetal"])
_B = BareMetalState


def _version(session: Session, platform: PlatformDep) -> PriceVersion | None:
    versions = load_versions(session)
    return version_at(versions, platform.ctx.clock.now()) if versions else None


def _price(version: PriceVersion | None, model: str) -> tuple[str | None, str]:
    currency = version.currency if version else "CNY"
    minor = version.server_hour.get(model, 0) if version else 0
    return (str(Money(minor, currency).decimal) if minor else None), currency


def server_out(a: Asset, s: BareMetalServer, version: PriceVersion | None,
               operator: bool) -> BareMetalServerOut:
    price, currency = _price(version, a.model)
    extra: dict[str, Any] = {}
    if operator:
        extra = {"reason": s.reason, "tenant_id": s.tenant_id, "lease_id": s.lease_id,
                 "state_since": s.state_since, "wipe_started_at": s.wipe_started_at}
    return BareMetalServerOut(
        name=a.name, model=a.model, vendor=a.vendor,
        accelerators=f"{a.accelerator_count}x{a.accelerator_model}" if a.accelerator_count
        else "", cpus=a.cpus, memory_gib=a.memory_gib,
        disks=[f"{d['count']}x{d['size_gib']}G {d['type']}" for d in a.disks or []],
        rack=a.rack, state=s.state.value, price_per_hour=price, currency=currency, **extra)


@router.get("/v1/baremetal/servers", response_model=Page[BareMetalServerOut])
def list_servers(platform: PlatformDep, who: PrincipalDep,
                 every: Annotated[bool, Query(alias="all")] = False) -> Page[BareMetalServerOut]:
    """Servers that can be leased now (free of jobs and priced); operators asking ``all``
    see every bare-metal server in any state, with who holds it and why it is in
    maintenance."""
    if every:
        who.require_operator("listing every bare-metal server")
    with platform.ctx.db.write() as session:
        store.sync_servers(session, platform.ctx.clock.now())
        version = _version(session, platform)
        free = {c.name for c in store.candidates(session, version, fleet_places(session))
                if c.state is _B.AVAILABLE and not c.busy and c.priced}
        items = [server_out(a, s, version, who.is_operator)
                 for a, s in store.servers(session) if every or a.name in free]
    return Page[BareMetalServerOut](items=items)


@router.post("/v1/baremetal/servers/{name}/return", response_model=BareMetalServerOut)
def return_server(name: str, platform: PlatformDep, who: PrincipalDep) -> BareMetalServerOut:
    """Out of maintenance: the server is wiped first, then available."""
    who.require_operator("returning bare-metal servers")
    now = platform.ctx.clock.now()
    with platform.ctx.db.write() as session:
        asset, server = store.find_server(session, name)
        if server.state is not _B.CLEANING:
            store.return_server(session, asset, server, who.user_name, now)
        out = server_out(asset, server, _version(session, platform), True)
    platform.wake()
    return out


@router.post("/v1/baremetal/servers/{name}/maintenance", response_model=BareMetalServerOut)
def maintenance(name: str, body: MaintenanceIn, platform: PlatformDep, who: PrincipalDep
                ) -> BareMetalServerOut:
    """Out of service now, with the reason (a tenant holding it stops paying); it comes back
    with ``return``, wiped first."""
    who.require_operator("taking bare-metal servers out of service")
    now = platform.ctx.clock.now()
    with platform.ctx.db.write() as session:
        asset, server = store.find_server(session, name)
        store.lock(session, server)
        if server.state is not _B.MAINTENANCE:
            store.to_maintenance(session, asset, server,
                                 f"{body.reason} (by {who.user_name})", now)
        out = server_out(asset, server, _version(session, platform), True)
    platform.wake()
    return out


# -- leases ------------------------------------------------------------------------------------


@router.post("/v1/baremetal/leases", status_code=201, response_model=BareMetalLeaseOut,
             responses={402: {"description": "the wallet does not cover the admission runway"},
                        409: {"description": "no such server is free now"}})
def create_lease(body: BareMetalLeaseIn, platform: PlatformDep, who: PrincipalDep,
                 idempotency_key: Annotated[str | None, Header()] = None) -> JSONResponse:
    """Lease one whole server (named, or any free one of a model) booted with an OS image.
    Admitted only if the wallet covers the server for the admission runway; billed per
    server-hour from when it is provisioned until it is released."""
    who.require(Role.MEMBER, "leasing bare-metal servers")
    now = platform.ctx.clock.now()

    def action(session: Session) -> Any:
        store.sync_servers(session, now)
        version = _version(session, platform)
        picked = pick_server(store.candidates(session, version, fleet_places(session)),
                             server=body.server, model=body.model)
        chosen = _chosen(picked)
        image = store.image_for(session, body.image)
        asset, server = store.find_server(session, chosen.name)
        assert version is not None  # a candidate is priced
        _admit(session, who, version, asset.model)
        lease = store.lease_server(session, platform.ctx.ids, who, asset, server, image, now)
        return lease_out(session, lease, version).model_dump(mode="json")

    response = idempotent.create(platform, who, idempotency_key, "/v1/baremetal/leases",
                                 body.model_dump(mode="json"), action)
    platform.wake()
    return response


def _chosen(picked: Candidate | tuple[Refusal, str]) -> Candidate:
    if isinstance(picked, Candidate):
        return picked
    refusal, message = picked
    if refusal is Refusal.INVALID:
        raise InvalidRequest(message, "server")
    if refusal is Refusal.UNKNOWN:
        raise InvalidRequest(message, "server" if "server" in message else "model")
    raise Conflict(message)


def _admit(session: Session, who: Principal, version: PriceVersion, model: str) -> None:
    if not store.pays(session, who.tenant_id):
        return  # the operator's own use is not billed
    runway = int(get_setting(session, "billing.admission_runway_seconds"))
    per_hour = version.server_hour.get(model, 0)
    balance = holdings(session, who.tenant_id).money_minor
    missing = lease_shortfall_minor(balance, per_hour, runway)
    if missing:
        money = version.currency
        raise InsufficientFunds(
            f"a {model} server costs {Money(per_hour, money)} per hour and needs {runway}s "
            f"covered to be leased; the wallet has {Money(balance, money)}: top up at least "
            f"{Money(missing, money)}")


@router.get("/v1/baremetal/leases", response_model=Page[BareMetalLeaseOut])
def list_leases(platform: PlatformDep, who: PrincipalDep, ended: bool = False,
                limit: Annotated[int, Query(ge=1, le=500)] = 100,
                cursor: str | None = None) -> Page[BareMetalLeaseOut]:
    query = store.visible_leases(who)
    if not ended:
        query = query.where(BareMetalLease.ended_at.is_(None))
    with platform.ctx.db.read() as session:
        page = paginate(session, query, BareMetalLease.id, limit, cursor)
        version = _version(session, platform)
        return Page[BareMetalLeaseOut](items=[lease_out(session, lease, version)
                                              for lease in page.items],
                                       next_cursor=page.next_cursor)


@router.get("/v1/baremetal/leases/{ref}", response_model=BareMetalLeaseOut)
def get_lease(ref: str, platform: PlatformDep, who: PrincipalDep) -> BareMetalLeaseOut:
    """One lease; while the server is the tenant's, with its power state as the BMC says."""
    with platform.ctx.db.read() as session:
        lease = store.find_lease(session, who, ref)
        out = lease_out(session, lease, _version(session, platform))
        access = None
        if out.state == _B.LEASED.value:
            access = store.access_of(session, session.get_one(Asset, lease.asset_id),
                                     platform.ctx.sealer)
    if access is None:
        return out
    try:
        on = Bmc(access).observe().power_on
    except BmcError:
        return out.model_copy(update={"power": "unknown"})
    return out.model_copy(update={"power": "on" if on else "off"})


@router.post("/v1/baremetal/leases/{ref}/power", response_model=BareMetalLeaseOut)
def power(ref: str, body: PowerIn, platform: PlatformDep, who: PrincipalDep
          ) -> BareMetalLeaseOut:
    """On, off or reset, through the server's BMC; only while the server is leased."""
    who.require(Role.MEMBER, "powering bare-metal servers")
    try:
        action = PowerAction(body.action)
    except ValueError:
        raise InvalidRequest(f"power {body.action!r}: write on, off or reset",
                             "action") from None
    with platform.ctx.db.read() as session:
        lease, asset, server = _held(session, who, ref)
        if server.state is not _B.LEASED:
            raise Conflict(f"{asset.name} is {server.state.value}; power it once it is leased")
        access = store.access_of(session, asset, platform.ctx.sealer)
    Bmc(access).power(action)  # a BmcError is a 502 that says what the BMC did
    with platform.ctx.db.write() as session:
        record_event(session, at=platform.ctx.clock.now(), object_kind=store.OBJECT_KIND,
                     object_id=asset.id, kind="baremetal.power", tenant_id=lease.tenant_id,
                     reason="POWER", message=f"power {action.value} by {who.user_name}")
    return get_lease(lease.id, platform, who)


@router.post("/v1/baremetal/leases/{ref}/reimage", response_model=BareMetalLeaseOut)
def reimage(ref: str, body: ReimageIn, platform: PlatformDep, who: PrincipalDep
            ) -> BareMetalLeaseOut:
    """Boot the server from an image again (the same one, or ``image``): the disks are the
    tenant's, so nothing is wiped; the lease and its billing go on."""
    who.require(Role.MEMBER, "reimaging bare-metal servers")
    now = platform.ctx.clock.now()
    with platform.ctx.db.write() as session:
        lease, asset, server = _held(session, who, ref)
        image = store.image_for(session, body.image or lease.image)
        store.reimage(session, asset, server, lease, image, who.user_name, now)
        out = lease_out(session, lease, _version(session, platform))
    platform.wake()
    return out


@router.post("/v1/baremetal/leases/{ref}/release", response_model=BareMetalLeaseOut)
def release(ref: str, platform: PlatformDep, who: PrincipalDep) -> BareMetalLeaseOut:
    """Give the server back: billing stops now; it is powered off and its disks wiped before
    anyone else gets it. Releasing twice is harmless."""
    who.require(Role.MEMBER, "releasing bare-metal servers")
    now = platform.ctx.clock.now()
    with platform.ctx.db.write() as session:
        lease = store.find_lease(session, who, ref)
        asset = session.get_one(Asset, lease.asset_id)
        server = session.get_one(BareMetalServer, lease.asset_id)
        store.release(session, asset, server, lease, who.user_name, now)
        out = lease_out(session, lease, _version(session, platform))
    platform.wake()
    return out


def _held(session: Session, who: Principal, ref: str
          ) -> tuple[BareMetalLease, Asset, BareMetalServer]:
    lease = store.find_lease(session, who, ref)
    server = session.get_one(BareMetalServer, lease.asset_id)
    store.held(lease, server)
    return lease, session.get_one(Asset, lease.asset_id), server


def lease_out(session: Session, lease: BareMetalLease, version: PriceVersion | None
              ) -> BareMetalLeaseOut:
    asset = session.get_one(Asset, lease.asset_id)
    server = session.get(BareMetalServer, lease.asset_id)
    live = lease.ended_at is None and server is not None and server.lease_id == lease.id
    price, currency = _price(version, asset.model)
    charged = session.scalar(select(func.coalesce(func.sum(MeteredLease.charged_minor), 0))
                             .where(MeteredLease.ref_id == lease.id)) or 0
    return BareMetalLeaseOut(
        id=lease.id, tenant_id=lease.tenant_id, server=asset.name, model=asset.model,
        accelerators=f"{asset.accelerator_count}x{asset.accelerator_model}"
        if asset.accelerator_count else "", image=lease.image,
        state=server.state.value if live and server is not None else "ended",
        reason=lease.reason or (server.reason if live and server is not None else ""),
        price_per_hour=price, currency=currency, created_at=lease.created_at,
        leased_at=lease.leased_at, ended_at=lease.ended_at,
        charged=str(Money(int(charged), currency).decimal))


# -- images and BMC logins (operators) ---------------------------------------------------------


@router.put("/v1/baremetal/images/{name}", response_model=BootImageOut)
def put_image(name: str, body: BootImageIn, platform: PlatformDep, who: PrincipalDep
              ) -> BootImageOut:
    """Register (or change) an image the BMC boots from virtual media: an OS a lease boots,
    or the wipe image that erases the disks between tenants and then powers the server off."""
    who.require_operator("registering boot images")
    if not name or len(name) > 64 or not name.replace("-", "").replace(".", "").isalnum():
        raise InvalidRequest(f"image name {name!r}: letters, digits, '-' and '.'", "name")
    with platform.ctx.db.write() as session:
        image = store.put_image(session, name, body.url, body.purpose,
                                platform.ctx.clock.now())
        return image_out(image)


@router.get("/v1/baremetal/images", response_model=Page[BootImageOut])
def list_images(platform: PlatformDep, who: PrincipalDep) -> Page[BootImageOut]:
    with platform.ctx.db.read() as session:
        images = session.scalars(select(BootImage).order_by(BootImage.name))
        return Page[BootImageOut](items=[image_out(i) for i in images])


def image_out(image: BootImage) -> BootImageOut:
    return BootImageOut(name=image.name, url=image.url, purpose=image.purpose,
                        created_at=image.created_at)


@router.put("/v1/assets/{name}/bmc-credentials", response_model=AssetOut)
def put_credentials(name: str, body: BmcCredentialsIn, platform: PlatformDep,
                    who: PrincipalDep) -> AssetOut:
    """The login the controller uses at this server's BMC; stored apart from the register's
    fields and never answered or logged."""
    who.require_operator("setting BMC logins")
    with platform.ctx.db.write() as session:
        asset = find_asset(session, name)
        store.set_credentials(session, asset, body.username, body.password, who.user_name,
                              platform.ctx.clock.now(), platform.ctx.sealer)
        return asset_out(session, asset, fleet_places(session))

