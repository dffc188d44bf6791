"""Creating POSTs run through here so that an Idempotency-Key replays the first response."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gpucloud.api.deps import Platform
from gpucloud.core.tenancy import Principal
from gpucloud.store import idempotency


def create(
    platform: Platform,
    who: Principal,
    key: str | None,
    route: str,
    body: Any,
    action: Callable[[Session], Any],
) -> JSONResponse:
    """Run ``action`` in one write transaction and answer 201 with what it returns (JSON-able).

    With a key, the response is stored in the same transaction as the object, so a retry after a
    lost response gets exactly the first answer and creates nothing. Two racing requests with
    one key: the loser's insert of the key fails, its transaction (object included) rolls back,
    and the retry below replays the winner's response.
    """
    fingerprint = idempotency.request_fingerprint("POST", route, body)
    for attempt in range(2):
        try:
            with platform.ctx.db.write() as session:
                if key is not None:
                    idempotency.check_key(key)
                    stored = idempotency.lookup(session, who.tenant_id, key, fingerprint)
                    if stored is not None:
                        return JSONResponse(
                            stored.body,
                            status_code=stored.status_code,
                            headers={"Idempotent-Replayed": "true"},
                        )
                result = action(session)
                if key is not None:
                    idempotency.remember(
                        session,
                        who.tenant_id,
                        key,
                        fingerprint,
                        201,
                        result,
                        platform.ctx.clock.now(),
                    )
            platform.wake()
            return JSONResponse(result, status_code=201)
        except IntegrityError:
            if key is None or attempt == 1:
                raise
    raise AssertionError("unreachable")
