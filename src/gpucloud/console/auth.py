"""The console's cookies and the signed-in caller of a request (a FastAPI dependency)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from starlette.responses import RedirectResponse, Response

from gpucloud.api.deps import PlatformDep
from gpucloud.console import csrf, render
from gpucloud.console.sessions import SessionPolicy, SignInRequired, resolve, touch
from gpucloud.core.tenancy import Principal

SESSION_COOKIE = "gpucloud_session"
SIGNIN_COOKIE = "gpucloud_signin"  # pre-session: carries the sign-in form's CSRF secret
SIGNIN_COOKIE_MAX_AGE_S = 3600


def policy(request: Request) -> SessionPolicy:
    found: SessionPolicy = getattr(request.app.state, "console_sessions", SessionPolicy())
    return found


def signed_in(request: Request, platform: PlatformDep) -> Principal:
    """The caller of a console page, from its session cookie; ``SignInRequired`` otherwise."""
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        raise SignInRequired("required")
    now = platform.ctx.clock.now()
    rules = policy(request)
    with platform.ctx.db.read() as session:
        found = resolve(session, secret, now, rules)
    if found.needs_touch:
        with platform.ctx.db.write() as session:
            touch(session, found.session_id, now)
    request.state.principal = found.principal
    request.state.token_id = found.token_id
    request.state.csrf = csrf.token_for(secret)
    return found.principal


Caller = Annotated[Principal, Depends(signed_in)]


def set_cookie(
    request: Request, response: Response, name: str, value: str, max_age: int, path: str = "/"
) -> None:
    """HttpOnly (no script reads it), SameSite=Lax (not sent with other sites' POSTs),
    Secure whenever the console is reached over HTTPS."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def clear_cookie(request: Request, response: Response, name: str, path: str = "/") -> None:
    response.delete_cookie(
        name, path=path, httponly=True, samesite="lax", secure=request.url.scheme == "https"
    )


def safe_next(target: str | None) -> str:
    """Where to go after sign-in: only a path of this site (never '//evil' or a URL)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def to_sign_in(request: Request, why: SignInRequired) -> Response:
    """A page asked for without a session: to the sign-in page (saying why), back here
    afterwards. A live part (console.js) gets 401 and reloads the page, which then lands here;
    a change gets 401 and is not made."""
    if request.headers.get(render.PART_HEADER) or request.method not in csrf.SAFE_METHODS:
        response: Response = render.error(request, 401, "Sign-in required", str(why))
    else:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        response = RedirectResponse(
            f"/login?why={why.code}&next={quote(target, safe='')}", status_code=303
        )
    if request.cookies.get(SESSION_COOKIE):
        clear_cookie(request, response, SESSION_COOKIE)
    return response
