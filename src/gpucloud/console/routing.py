"""Console routes: a route class that checks CSRF on every change and turns errors into pages.

Every console router uses ``ConsoleRoute``, so no change can be added without the CSRF check:
unsafe methods are verified before the endpoint (and its form parsing) runs. Errors of the
domain (``GpucloudError``) become HTML pages with the API's status code and message; the API's
own problem+json handlers are untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import Response

from gpucloud.api.problems import TITLES, status_of
from gpucloud.api.routing import OneHopRoute
from gpucloud.console import auth, csrf, render
from gpucloud.console.sessions import SignInRequired
from gpucloud.core.errors import GpucloudError
from gpucloud.core.jobspec import describe_validation_error

SIGN_IN_PATH = "/login"  # its CSRF secret is the pre-session cookie's, not a session's


class ConsoleRoute(OneHopRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = super().get_route_handler()
        cookie = auth.SIGNIN_COOKIE if self.path == SIGN_IN_PATH else auth.SESSION_COOKIE

        async def handler(request: Request) -> Response:
            try:
                if request.method not in csrf.SAFE_METHODS:
                    await csrf.check(request, request.cookies.get(cookie))
                response = await endpoint(request)
            except SignInRequired as err:
                response = auth.to_sign_in(request, err)
            except csrf.CsrfRejected as err:
                response = render.error(request, 403, "Refused", str(err))
            except GpucloudError as err:
                status = status_of(err)
                response = render.error(request, status, TITLES.get(status, "Error"), str(err))
            except RequestValidationError as err:
                detail = describe_validation_error(list(err.errors()))
                response = render.error(request, 422, "Invalid request", detail)
            return render.secure(response)

        return handler


def console_router() -> APIRouter:
    return APIRouter(route_class=ConsoleRoute, include_in_schema=False)
