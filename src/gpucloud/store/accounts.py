"""Tenants, users and API tokens. Secrets are returned once and stored only as hashes."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gpucloud.core.clock import as_utc
from gpucloud.core.errors import Conflict, InvalidRequest, NotFound, Unauthenticated
from gpucloud.core.ids import IdFactory
from gpucloud.core.tenancy import Principal, Role
from gpucloud.store.models import ApiToken, Tenant, User

TOKEN_PREFIX = "gpc_"
OPERATOR_TENANT = "operator"
ADMIN_USER = "admin"
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_name(kind: str, name: str) -> None:
    if not _NAME.match(name):
        raise InvalidRequest(
            f"{kind} name {name!r} is invalid: use 1-63 lower-case letters, digits or '-', "
            "starting with a letter",
            "name",
        )


def create_tenant(
    session: Session, ids: IdFactory, name: str, now: datetime, is_operator: bool = False
) -> Tenant:
    check_name("tenant", name)
    if session.scalar(select(Tenant).where(Tenant.name == name)):
        raise Conflict(f"tenant {name!r} already exists; pick another name")
    tenant = Tenant(id=ids.new("tnt", now), name=name, is_operator=is_operator, created_at=now)
    session.add(tenant)
    session.flush()
    return tenant


def find_tenant(session: Session, name_or_id: str) -> Tenant:
    tenant = session.scalar(
        select(Tenant).where((Tenant.name == name_or_id) | (Tenant.id == name_or_id))
    )
    if tenant is None:
        raise NotFound("tenant", name_or_id)
    return tenant


def create_user(
    session: Session, ids: IdFactory, tenant: Tenant, name: str, role: Role, now: datetime
) -> User:
    check_name("user", name)
    if session.scalar(select(User).where(User.name == name)):
        raise Conflict(f"user {name!r} already exists; user names are global, pick another")
    user = User(
        id=ids.new("usr", now),
        tenant_id=tenant.id,
        name=name,
        role=role.value,
        created_at=now,
        tenant=tenant,
    )
    session.add(user)
    session.flush()
    return user


def find_user(session: Session, name_or_id: str) -> User:
    user = session.scalar(select(User).where((User.name == name_or_id) | (User.id == name_or_id)))
    if user is None:
        raise NotFound("user", name_or_id)
    return user


def issue_token(
    session: Session,
    ids: IdFactory,
    user: User,
    name: str,
    now: datetime,
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """A new token for ``user``; the secret is returned here and never again."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        id=ids.new("tok", now),
        user_id=user.id,
        name=name,
        token_hash=hash_token(secret),
        created_at=now,
        expires_at=expires_at,
        revoked_at=None,
        user=user,
    )
    session.add(token)
    session.flush()
    return token, secret


def principal_of(user: User) -> Principal:
    role = Role(user.role)
    return Principal(
        user_id=user.id,
        user_name=user.name,
        tenant_id=user.tenant_id,
        tenant_name=user.tenant.name,
        role=role,
        is_operator=user.tenant.is_operator and role is Role.ADMIN,
    )


@dataclass(frozen=True)
class CheckedToken:
    principal: Principal
    expires_at: datetime | None


def authenticate(session: Session, secret: str, now: datetime) -> Principal:
    return check_token(session, hash_token(secret), now).principal


def check_token(session: Session, token_hash: str, now: datetime) -> CheckedToken:
    """The caller a token stands for, and until when the token is valid."""
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash))
    if token is None or token.revoked_at is not None:
        raise Unauthenticated(
            "the API token is unknown or revoked; create one with "
            "'gpucloud token create' or ask your tenant admin"
        )
    if token.expires_at is not None and as_utc(token.expires_at) <= now:
        raise Unauthenticated("the API token has expired; create a new one")
    return CheckedToken(principal_of(token.user), token.expires_at)


def bootstrap_operator(session: Session, ids: IdFactory, now: datetime) -> str | None:
    """Create the operator tenant and its admin on first start; returns the admin token then."""
    if session.scalar(select(Tenant).where(Tenant.is_operator)) is not None:
        return None
    tenant = create_tenant(session, ids, OPERATOR_TENANT, now, is_operator=True)
    admin = create_user(session, ids, tenant, ADMIN_USER, Role.ADMIN, now)
    _, secret = issue_token(session, ids, admin, "bootstrap", now)
    return secret
