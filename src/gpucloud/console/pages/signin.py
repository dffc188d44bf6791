"""Sign in with an API token, and sign out."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import Form, Request
from starlette.responses import RedirectResponse, Response

from gpucloud.api.deps import PlatformDep, client_address
from gpucloud.console import auth, csrf, render
from gpucloud.console.routing import console_router
from gpucloud.console.sessions import (
    MESSAGES,
    SignInRequired,
    new_secret,
    resolve,
    sign_in,
    sign_out,
)
from gpucloud.core.errors import RateLimited, Unauthenticated

router = console_router()


def form_page(
    request: Request, message: str = "", next_path: str = "/", status: int = 200,
    error: bool = False,
) -> Response:
    """The sign-in form, with a fresh pre-session cookie unless one is there already."""
    secret = request.cookies.get(auth.SIGNIN_COOKIE) or new_secret()
    context = {"message": message, "error": error, "next": auth.safe_next(next_path),
               "signin_csrf": csrf.token_for(secret)}
    response = render.page(request, "login.html", context, status=status)
    auth.set_cookie(request, response, auth.SIGNIN_COOKIE, secret, auth.SIGNIN_COOKIE_MAX_AGE_S,
                    path="/login")
    return response


@router.get("/login")
def login_form(
    request: Request, platform: PlatformDep, next: str = "/", why: str = ""
) -> Response:
    secret = request.cookies.get(auth.SESSION_COOKIE)
    if secret:
        try:
            with platform.ctx.db.read() as session:
                resolve(session, secret, platform.ctx.clock.now(), auth.policy(request))
            return RedirectResponse(auth.safe_next(next), status_code=303)
        except SignInRequired:
            pass
    return form_page(request, MESSAGES.get(why, ""), next_path=next)


@router.post("/login")
def login(
    request: Request,
    platform: PlatformDep,
    token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    if not token.strip():
        return form_page(request, "Enter an API token.", next, 422, error=True)
    try:
        limited = platform.auth_failures.guard(client_address(request))
        with limited, platform.ctx.db.write() as session:
            _, secret = sign_in(
                session, platform.ctx.ids, token.strip(), platform.ctx.clock.now(),
                auth.policy(request),
            )
    except Unauthenticated as err:
        return form_page(request, str(err), next, 401, error=True)
    except RateLimited as err:  # the API's limit on guessing tokens, shared with sign-in
        page = form_page(request, str(err), next, 429, error=True)
        page.headers["Retry-After"] = str(math.ceil(err.retry_after_s))
        return page
    response = RedirectResponse(auth.safe_next(next), status_code=303)
    auth.set_cookie(request, response, auth.SESSION_COOKIE, secret, auth.policy(request).absolute_s)
    auth.clear_cookie(request, response, auth.SIGNIN_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, platform: PlatformDep) -> Response:
    secret = request.cookies.get(auth.SESSION_COOKIE)
    if secret:
        with platform.ctx.db.write() as session:
            sign_out(session, secret, platform.ctx.clock.now())
    response = RedirectResponse("/login", status_code=303)
    auth.clear_cookie(request, response, auth.SESSION_COOKIE)
    return response
