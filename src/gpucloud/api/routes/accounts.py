"""/v1/tenants, /v1/users, /v1/tokens and /v1/whoami."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import Header, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from gpucloud.api import idempotent
from gpucloud.api.deps import PlatformDep, PrincipalDep
from gpucloud.api.routing import api_router
from gpucloud.api.views import tenant_out, token_out, user_out
from gpucloud.core.errors import NotFound
from gpucloud.core.tenancy import Principal, Role
from gpucloud.schemas import (
    Page,
    TenantCreate,
    TenantOut,
    TokenCreate,
    TokenCreated,
    TokenOut,
    UserCreate,
    UserCreated,
    UserOut,
    WhoAmI,
)
from gpucloud.store import accounts
from gpucloud.store.models import ApiToken, Tenant, User
from gpucloud.store.paging import paginate

router = api_router(prefix="/v1", tags=["accounts"])
Limit = Annotated[int, Query(ge=1, le=500)]
IdempotencyKey = Annotated[str | None, Header()]


@router.get("/whoami", response_model=WhoAmI)
def whoami(who: PrincipalDep) -> WhoAmI:
    return WhoAmI(
        user_id=who.user_id,
        user=who.user_name,
        tenant_id=who.tenant_id,
        tenant=who.tenant_name,
        role=who.role,
        is_operator=who.is_operator,
    )


@router.post("/tenants", status_code=201, response_model=TenantOut)
def create_tenant(
    body: TenantCreate,
    platform: PlatformDep,
    who: PrincipalDep,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    who.require_operator("creating tenants")

    def action(session: Session) -> Any:
        tenant = accounts.create_tenant(
            session, platform.ctx.ids, body.name, platform.ctx.clock.now()
        )
        return tenant_out(tenant).model_dump(mode="json")

    return idempotent.create(
        platform, who, idempotency_key, "/v1/tenants", body.model_dump(mode="json"), action
    )


@router.get("/tenants", response_model=Page[TenantOut])
def list_tenants(
    platform: PlatformDep, who: PrincipalDep, limit: Limit = 100, cursor: str | None = None
) -> Page[TenantOut]:
    query = select(Tenant)
    if not who.is_operator:
        query = query.where(Tenant.id == who.tenant_id)
    with platform.ctx.db.read() as session:
        page = paginate(session, query, Tenant.id, limit, cursor, newest_first=False)
        return Page[TenantOut](
            items=[tenant_out(t) for t in page.items], next_cursor=page.next_cursor
        )


def _target_tenant(session: Session, who: Principal, name_or_id: str | None) -> Tenant:
    if name_or_id is None:
        return session.get_one(Tenant, who.tenant_id)
    tenant = accounts.find_tenant(session, name_or_id)
    if not who.can_see(tenant.id):
        raise NotFound("tenant", name_or_id)
    return tenant


@router.post("/users", status_code=201, response_model=UserCreated)
def create_user(
    body: UserCreate,
    platform: PlatformDep,
    who: PrincipalDep,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    def action(session: Session) -> Any:
        tenant = _target_tenant(session, who, body.tenant)
        who.require(Role.ADMIN, "creating users")
        now = platform.ctx.clock.now()
        user = accounts.create_user(session, platform.ctx.ids, tenant, body.name, body.role, now)
        _, secret = accounts.issue_token(session, platform.ctx.ids, user, "initial", now)
        return UserCreated(**user_out(user).model_dump(), token=secret).model_dump(mode="json")

    return idempotent.create(
        platform, who, idempotency_key, "/v1/users", body.model_dump(mode="json"), action
    )


@router.get("/users", response_model=Page[UserOut])
def list_users(
    platform: PlatformDep, who: PrincipalDep, limit: Limit = 100, cursor: str | None = None
) -> Page[UserOut]:
    query = select(User)
    if not who.is_operator:
        query = query.where(User.tenant_id == who.tenant_id)
    with platform.ctx.db.read() as session:
        page = paginate(session, query, User.id, limit, cursor, newest_first=False)
        return Page[UserOut](items=[user_out(u) for u in page.items], next_cursor=page.next_cursor)


def _manageable_user(session: Session, who: Principal, name_or_id: str | None) -> User:
    """The caller itself, or (for admins) a user of a tenant they administer."""
    if name_or_id is None:
        return session.get_one(User, who.user_id)
    user = accounts.find_user(session, name_or_id)
    if not who.can_see(user.tenant_id):
        raise NotFound("user", name_or_id)
    if user.id != who.user_id:
        who.require(Role.ADMIN, "managing another user's tokens")
    return user


@router.post("/tokens", status_code=201, response_model=TokenCreated)
def create_token(
    body: TokenCreate,
    platform: PlatformDep,
    who: PrincipalDep,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    def action(session: Session) -> Any:
        user = _manageable_user(session, who, body.user)
        now = platform.ctx.clock.now()
        expires = now + timedelta(seconds=body.expires_in_s) if body.expires_in_s else None
        token, secret = accounts.issue_token(
            session, platform.ctx.ids, user, body.name, now, expires
        )
        return TokenCreated(**token_out(token).model_dump(), token=secret).model_dump(mode="json")

    return idempotent.create(
        platform, who, idempotency_key, "/v1/tokens", body.model_dump(mode="json"), action
    )


def _visible_tokens(who: Principal) -> Any:
    query = select(ApiToken).join(User, User.id == ApiToken.user_id)
    if who.is_operator:
        return query
    if who.role is Role.ADMIN:
        return query.where(User.tenant_id == who.tenant_id)
    return query.where(ApiToken.user_id == who.user_id)


@router.get("/tokens", response_model=Page[TokenOut])
def list_tokens(
    platform: PlatformDep, who: PrincipalDep, limit: Limit = 100, cursor: str | None = None
) -> Page[TokenOut]:
    with platform.ctx.db.read() as session:
        page = paginate(
            session, _visible_tokens(who), ApiToken.id, limit, cursor, newest_first=False
        )
        return Page[TokenOut](
            items=[token_out(t) for t in page.items], next_cursor=page.next_cursor
        )


@router.delete("/tokens/{token_id}", response_model=TokenOut)
def revoke_token(token_id: str, platform: PlatformDep, who: PrincipalDep) -> TokenOut:
    with platform.ctx.db.write() as session:
        token = session.scalar(_visible_tokens(who).where(ApiToken.id == token_id))
        if token is None:
            raise NotFound("token", token_id)
        if token.revoked_at is None:
            token.revoked_at = platform.ctx.clock.now()
        out = token_out(token)
    platform.tokens.forget(token.token_hash)  # committed: no request here may use it again
    return out
