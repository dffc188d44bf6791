"""API tokens: the caller's (all of the tenant's for its admins), create one (its secret is
shown once, on the page that answers the form), revoke one."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Form, Request
from starlette.responses import RedirectResponse, Response

from gpucloud.api.deps import PlatformDep
from gpucloud.api.routes import accounts as accounts_api
from gpucloud.console import render
from gpucloud.console.auth import Caller
from gpucloud.console.routing import console_router
from gpucloud.core.errors import GpucloudError
from gpucloud.core.tenancy import Principal
from gpucloud.schemas import TokenCreate, TokenCreated

router = console_router()
LIFETIMES = {"": "never", "86400": "1 day", "2592000": "30 days", "7776000": "90 days"}


def _page(
    request: Request, platform: PlatformDep, who: Principal, created: TokenCreated | None = None,
    error: str = "", status: int = 200,
) -> Response:
    tokens = accounts_api.list_tokens(platform, who, 500, None).items
    context: dict[str, Any] = {
        "tokens": sorted(tokens, key=lambda t: t.created_at, reverse=True),
        "created": created,
        "error": error,
        "lifetimes": LIFETIMES,
        "current_token": getattr(request.state, "token_id", None),
    }
    return render.page(request, "tokens.html", context, status=status)


@router.get("/tokens")
def tokens_page(request: Request, platform: PlatformDep, who: Caller) -> Response:
    return _page(request, platform, who)


@router.post("/tokens")
def create_token(
    request: Request,
    platform: PlatformDep,
    who: Caller,
    name: Annotated[str, Form()] = "",
    expires_in_s: Annotated[str, Form()] = "",
) -> Response:
    if not name.strip():
        return _page(request, platform, who, error="Name the token (e.g. laptop, ci).",
                     status=422)
    try:
        body = TokenCreate(
            name=name.strip()[:64],
            expires_in_s=int(expires_in_s) if expires_in_s in LIFETIMES and expires_in_s else None,
        )
        answer = accounts_api.create_token(body, platform, who, None)
    except (GpucloudError, ValueError) as err:
        return _page(request, platform, who, error=str(err), status=422)
    created = TokenCreated.model_validate(json.loads(bytes(answer.body)))
    return _page(request, platform, who, created=created, status=201)


@router.post("/tokens/{token_id}/revoke")
def revoke_token(token_id: str, platform: PlatformDep, who: Caller) -> Response:
    accounts_api.revoke_token(token_id, platform, who)
    return RedirectResponse("/tokens", status_code=303)
