"""Console sessions: sign in with an API token, resolve a cookie to a Principal, sign out.

The cookie carries a 256-bit random secret; the database keeps only its SHA-256 (as for API
tokens). A session is bound to the token it was signed in with, so revoking or expiring that
token ends it; it also ends at sign-out, after ``absolute_s`` and after ``idle_s`` unused.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from gpucloud.core.clock import as_utc
from gpucloud.core.ids import IdFactory
from gpucloud.core.tenancy import Principal
from gpucloud.store.accounts import authenticate, hash_token, principal_of
from gpucloud.store.models import ApiToken, ConsoleSession


@dataclass(frozen=True)
class SessionPolicy:
    absolute_s: int = 12 * 3600  # a working day, then sign in again
    idle_s: int = 3600  # unused for an hour (no page open): ended
    touch_every_s: int = 60  # last_seen_at is written at most this often (one write a minute)


MESSAGES = {
    "required": "Sign in with an API token to use the console.",
    "signed-out": "You are signed out. Sign in with an API token.",
    "expired": "Your session has expired. Sign in again.",
    "idle": "Your session ended after a period without use. Sign in again.",
    "revoked": "The API token this session was signed in with has been revoked. "
    "Sign in with another token.",
    "token-expired": "The API token this session was signed in with has expired. "
    "Sign in with another token.",
}


class SignInRequired(Exception):
    """No valid session; ``code`` (a key of MESSAGES) says why, for the sign-in page."""

    def __init__(self, code: str) -> None:
        super().__init__(MESSAGES[code])
        self.code = code


@dataclass(frozen=True)
class Resolved:
    principal: Principal
    session_id: str
    token_id: str  # the API token the session was signed in with
    needs_touch: bool


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def sign_in(
    session: Session, ids: IdFactory, token_secret: str, now: datetime, policy: SessionPolicy
) -> tuple[Principal, str]:
    """A new session for the holder of ``token_secret``; returns the cookie secret.

    Raises ``Unauthenticated`` with the API's own message for an unknown, revoked or expired
    token: the console signs in by exactly the API's rules.
    """
    principal = authenticate(session, token_secret, now)
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token_secret)))
    assert token is not None  # authenticate found it
    session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < now))
    expires = now + timedelta(seconds=policy.absolute_s)
    if token.expires_at is not None:
        expires = min(expires, as_utc(token.expires_at))
    secret = new_secret()
    session.add(
        ConsoleSession(
            id=ids.new("ses", now),
            secret_hash=hash_token(secret),
            user_id=token.user_id,
            token_id=token.id,
            created_at=now,
            last_seen_at=now,
            expires_at=expires,
            ended_at=None,
        )
    )
    session.flush()
    return principal, secret


def resolve(session: Session, secret: str, now: datetime, policy: SessionPolicy) -> Resolved:
    """The caller behind a cookie secret, or ``SignInRequired`` saying why not."""
    row = session.scalar(
        select(ConsoleSession).where(ConsoleSession.secret_hash == hash_token(secret))
    )
    if row is None or row.ended_at is not None:
        raise SignInRequired("signed-out")
    if as_utc(row.expires_at) <= now:
        raise SignInRequired("expired")
    idle = (now - as_utc(row.last_seen_at)).total_seconds()
    if idle >= policy.idle_s:
        raise SignInRequired("idle")
    token = row.token
    if token.revoked_at is not None:
        raise SignInRequired("revoked")
    if token.expires_at is not None and as_utc(token.expires_at) <= now:
        raise SignInRequired("token-expired")
    return Resolved(principal_of(token.user), row.id, token.id, idle >= policy.touch_every_s)


def touch(session: Session, session_id: str, now: datetime) -> None:
    row = session.get(ConsoleSession, session_id)
    if row is not None and row.ended_at is None:
        row.last_seen_at = now


def sign_out(session: Session, secret: str, now: datetime) -> None:
    row = session.scalar(
        select(ConsoleSession).where(ConsoleSession.secret_hash == hash_token(secret))
    )
    if row is not None and row.ended_at is None:
        row.ended_at = now
