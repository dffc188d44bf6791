"""CSRF protection for every change the console makes.

Synchronizer tokens derived from the session's secret: ``HMAC-SHA256(secret, purpose)``. The
secret lives only in an HttpOnly cookie; the token is written into each page (a hidden form
field, and a meta tag for the page's own fetches) and must come back with every POST, in the
``csrf_token`` field or the ``X-CSRF-Token`` header. A page on another site can make a browser
send the cookie but can neither read the token nor compute it. Before sign-in, the same scheme
runs on a short-lived pre-session cookie, so the sign-in form is protected too (login CSRF).
An ``Origin`` header naming another site is refused as well (defence in depth).
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request

FIELD = "csrf_token"
HEADER = "x-csrf-token"
_PURPOSE = b"gpucloud-console-csrf-v1"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CsrfRejected(Exception):
    """The change came without a valid token (or from another origin): answered 403."""


def token_for(secret: str) -> str:
    return hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).hexdigest()


def same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:  # browsers send it with every cross-site POST; tools may not
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


async def check(request: Request, secret: str | None) -> None:
    """Raise ``CsrfRejected`` unless the request carries the token of ``secret``."""
    if not same_origin(request):
        raise CsrfRejected(
            "This change came from another site and was refused. "
            "Use the console's own pages to make changes."
        )
    sent = request.headers.get(HEADER)
    if sent is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            value = (await request.form()).get(FIELD)
            sent = value if isinstance(value, str) else None
    if secret is None or not sent or not hmac.compare_digest(sent, token_for(secret)):
        raise CsrfRejected(
            "This form is out of date or incomplete (its security token is missing or wrong), "
            "so nothing was changed. Reload the page and try again."
        )
