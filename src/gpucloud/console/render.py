"""Server-side rendering: one Jinja environment, pages and their live parts, error pages, and
the security headers every console response carries."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from gpucloud.console import formatting

HERE = Path(__file__).parent
PART_HEADER = "x-console-part"  # sent by console.js when it asks for a live part of a page

_env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,  # a misspelt variable is an error, not an empty string
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(
    money=formatting.money,
    duration=formatting.duration,
    when=formatting.when,
    mib=formatting.mib,
    cpus=formatting.cpus,
    plural=formatting.plural,
    state_class=formatting.state_class,
)

SECURITY_HEADERS = {
    "Cache-Control": "no-store",  # pages hold tenant data and, once, new token secrets
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def secure(response: Response) -> Response:
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
    return response


def _base_context(request: Request) -> dict[str, Any]:
    state = request.state
    return {
        "request": request,
        "path": request.url.path,
        "who": getattr(state, "principal", None),
        "csrf": getattr(state, "csrf", ""),
        "now": _now(request),
    }


def _now(request: Request) -> datetime:
    platform = getattr(request.app.state, "platform", None)
    return platform.ctx.clock.now() if platform is not None else datetime.now(UTC)


def html(request: Request, template: str, context: Mapping[str, Any]) -> str:
    return _env.get_template(template).render({**_base_context(request), **context})


def page(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    parts: Mapping[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    """The whole page, or with ``?part=NAME`` (and the live-part header) only that part's
    template, rendered from the same context: the page and its live updates never differ."""
    name = request.query_params.get("part")
    if parts and name is not None and name in parts:
        return HTMLResponse(html(request, parts[name], context), status_code=status)
    return HTMLResponse(html(request, template, context), status_code=status)


def error(request: Request, status: int, title: str, detail: str) -> Response:
    if request.headers.get(PART_HEADER):
        return Response(detail, status_code=status, media_type="text/plain")
    body = html(request, "error.html", {"status": status, "title": title, "detail": detail})
    return HTMLResponse(body, status_code=status)
