"""The typed Python SDK over the REST API; the CLI is built on it.

Every failure a caller should handle is an :class:`ApiError` whose message is the server's own
sentence (problem+json ``detail``), so scripts and the CLI show the same words as the API.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from gpucloud.billing.limits import LimitKind, Period
from gpucloud.client import config
from gpucloud.client.control import ControlMixin
from gpucloud.client.fleet import FleetMixin
from gpucloud.client.images import ImagesMixin
from gpucloud.client.instances import InstancesMixin
from gpucloud.client.services import ServicesMixin
from gpucloud.client.storage import StorageMixin
from gpucloud.core.errors import InvalidRequest
from gpucloud.core.jobspec import JobSpec, parse_job_spec
from gpucloud.core.states import TERMINAL
from gpucloud.schemas import (
    Estimate,
    EventOut,
    FaultOut,
    JobOut,
    LedgerReport,
    LimitOut,
    NodeOut,
    Page,
    PriceBookHistory,
    PriceBookOut,
    SettingOut,
    TenantOut,
    TokenCreated,
    TokenOut,
    UsageOut,
    UserCreated,
    UserOut,
    WalletOut,
    WhoAmI,
    XidPolicyOut,
)

M = TypeVar("M", bound=BaseModel)
MAX_PAGE = 500  # the API's largest page
RETRY_PAUSE_S = 0.2
MAX_RETRY_AFTER_S = 2.0
# A database failover or restart takes seconds: resendable calls try this many times, pausing
# RETRY_PAUSE_S, then twice as long each time (or the server's Retry-After), about 6 s in all.
ATTEMPTS = 6
NO_TOKEN = "no API token: run 'gpucloud login URL --token T' or set GPUCLOUD_TOKEN"


class ApiError(Exception):
    """An error answered by the API (or no answer at all); ``str(err)`` is the detail."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, code={self.code!r})"


class UnreachableError(ApiError):
    """The server did not answer at all (not started, wrong URL, network down)."""

    def __init__(self, url: str, cause: str = "") -> None:
        super().__init__(
            0, "unreachable", f"cannot reach gpucloud at {url}: is 'gpucloud up' running?"
        )
        self.cause = cause


class NoTokenError(ApiError):
    """No token was given, set in the environment or saved by ``gpucloud login``."""

    def __init__(self) -> None:
        super().__init__(0, "no_token", NO_TOKEN)


def error_from_response(response: httpx.Response) -> ApiError:
    """The problem+json body as an ApiError; something readable for any other body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return ApiError(response.status_code, str(body.get("code") or "error"), body["detail"])
    text = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
    reason = response.reason_phrase or "error"
    return ApiError(
        response.status_code,
        "http_error",
        f"HTTP {response.status_code} {reason}" + (f": {text}" if text else ""),
    )


class Client(InstancesMixin, FleetMixin, ImagesMixin, ServicesMixin, StorageMixin, ControlMixin):
    """A session with one gpucloud server. Arguments left out come from :mod:`config`."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url, self.token = config.resolve(url, token)
        if not self.url.startswith(("http://", "https://")):
            raise ApiError(
                0, "invalid_url", f"{self.url!r} is not a URL; write e.g. {config.DEFAULT_URL}"
            )
        self.timeout = timeout
        headers = {"User-Agent": "gpucloud-python"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- transport -----------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        safe_to_resend: bool = False,
    ) -> Any:
        """One request and its JSON answer. Retried once when it provably never arrived
        (connect error), or when resending is harmless (idempotent, or keyed by an
        Idempotency-Key) after a transport error; a 503 (the database away) is resent up to
        ATTEMPTS times with backoff."""
        if not self.token:
            raise NoTokenError()
        for attempt in range(ATTEMPTS):
            last = attempt == ATTEMPTS - 1
            pause = RETRY_PAUSE_S * 2**attempt
            try:
                response = self._http.request(
                    method, path, params=params, json=body, headers=headers
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as err:
                # Never arrived: safe to resend once, but a server that is not running
                # should be said at once, not after the whole backoff.
                if attempt >= 1:
                    raise self._transport_error(err) from err
                time.sleep(pause)
                continue
            except httpx.TransportError as err:  # each try may have waited the whole timeout
                if attempt >= 1 or not safe_to_resend:
                    raise self._transport_error(err) from err
                time.sleep(pause)
                continue
            if response.status_code == 503 and safe_to_resend and not last:
                time.sleep(max(pause, _retry_after(response)))
                continue
            if response.is_error:
                raise error_from_response(response)
            try:
                return response.json()
            except ValueError as err:
                raise ApiError(
                    response.status_code,
                    "bad_response",
                    f"the server at {self.url} answered something that is not "
                    "JSON; is GPUCLOUD_URL right?",
                ) from err
        raise AssertionError("unreachable")

    def _parse(self, model: type[M], data: Any) -> M:
        """A body of another shape means another server or version: say so, no traceback."""
        try:
            return model.model_validate(data)
        except ValidationError as err:
            raise ApiError(
                0,
                "bad_response",
                f"unexpected answer from {self.url} ({err.error_count()} field(s) differ from "
                f"{model.__name__}); are the client and server the same gpucloud version?",
            ) from err

    def _get(self, path: str, model: type[M], params: Any = None) -> M:
        return self._parse(model, self._send("GET", path, params=params, safe_to_resend=True))

    def _create(self, path: str, model: type[M], body: Any, key: str | None = None) -> M:
        """A creating POST, always keyed so that the automatic retry never creates twice."""
        headers = {"Idempotency-Key": key or str(uuid.uuid4())}
        return self._parse(
            model, self._send("POST", path, body=body, headers=headers, safe_to_resend=True)
        )

    def _pages(
        self,
        path: str,
        model: type[M],
        params: Mapping[str, Any] | None = None,
        limit: int | None = None,
    ) -> list[M]:
        """Every item of a listing (at most ``limit``), following ``next_cursor``."""
        items: list[M] = []
        cursor: str | None = None
        page_model = Page[model]  # type: ignore[valid-type]
        while limit is None or len(items) < limit:
            size = MAX_PAGE if limit is None else min(MAX_PAGE, limit - len(items))
            query: dict[str, Any] = {**(params or {}), "limit": size}
            if cursor is not None:
                query["cursor"] = cursor
            page = self._parse(
                page_model, self._send("GET", path, params=query, safe_to_resend=True)
            )
            items.extend(page.items)
            cursor = page.next_cursor
            if not cursor or not page.items:
                break
        return items if limit is None else items[:limit]

    # -- identity ------------------------------------------------------------------------------

    def whoami(self) -> WhoAmI:
        return self._get("/v1/whoami", WhoAmI)

    # -- jobs ----------------------------------------------------------------------------------

    def submit_job(
        self, spec: JobSpec | Mapping[str, Any], idempotency_key: str | None = None
    ) -> JobOut:
        """Validate locally (the same rules as the server), then submit once, even if retried.

        A wallet that cannot pay for the job is an ApiError 402 (code ``insufficient_funds``)
        whose message says how much to top up."""
        spec = _job_spec(spec)
        return self._create("/v1/jobs", JobOut, spec.model_dump(mode="json"), idempotency_key)

    def list_jobs(
        self, states: Sequence[str] | None = None, limit: int | None = None
    ) -> list[JobOut]:
        params = {"state": [str(s) for s in states]} if states else None
        return self._pages("/v1/jobs", JobOut, params, limit)

    def get_job(self, job_id: str) -> JobOut:
        return self._get(f"/v1/jobs/{_seg(job_id)}", JobOut)

    def cancel_job(self, job_id: str) -> JobOut:
        data = self._send("POST", f"/v1/jobs/{_seg(job_id)}/cancel", safe_to_resend=True)
        return self._parse(JobOut, data)

    def job_events(self, job_id: str) -> list[EventOut]:
        """The job's whole timeline, oldest first."""
        return self._pages(f"/v1/jobs/{_seg(job_id)}/events", EventOut)

    def job_logs(self, job_id: str, follow: bool = False, offset: int = 0) -> Iterator[bytes]:
        """The job's output as it comes; following has no read timeout (a job may be quiet)."""
        if not self.token:
            raise NoTokenError()
        timeout = httpx.Timeout(self.timeout, read=None) if follow else self.timeout
        params = {"follow": "true" if follow else "false", "offset": offset}
        try:
            with self._http.stream(
                "GET", f"/v1/jobs/{_seg(job_id)}/logs", params=params, timeout=timeout
            ) as response:
                if response.is_error:
                    response.read()
                    raise error_from_response(response)
                yield from response.iter_bytes()
        except httpx.TransportError as err:
            raise self._transport_error(err) from err

    def _transport_error(self, err: httpx.TransportError) -> ApiError:
        """Say which: never reached, too slow, or cut off mid-answer."""
        if isinstance(err, httpx.ConnectError | httpx.ConnectTimeout):
            return UnreachableError(self.url, str(err))
        if isinstance(err, httpx.TimeoutException):
            return ApiError(
                0,
                "timeout",
                f"gpucloud at {self.url} did not answer within "
                f"{self.timeout:g}s; retry, or look at the server's log",
            )
        return ApiError(
            0,
            "connection_lost",
            f"lost the connection to gpucloud at {self.url} ({str(err) or type(err).__name__})",
        )

    def wait_job(
        self,
        job_id: str,
        timeout: float | None = None,
        poll_s: float = 0.5,
        on_poll: Callable[[JobOut], None] | None = None,
    ) -> JobOut:
        """Poll until the job is SUCCEEDED, FAILED or CANCELLED; TimeoutError after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get_job(job_id)
            if on_poll is not None:
                on_poll(job)
            if job.state in TERMINAL:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {job.state.value} after {timeout:g}s")
            pause = poll_s if deadline is None else min(poll_s, deadline - time.monotonic())
            time.sleep(max(pause, 0.0))

    # -- fleet ---------------------------------------------------------------------------------

    def list_nodes(self) -> list[NodeOut]:
        return self._pages("/v1/nodes", NodeOut)

    def get_node(self, node_id: str) -> NodeOut:
        return self._get(f"/v1/nodes/{_seg(node_id)}", NodeOut)

    def quarantine_node(self, node_id: str, reason: str) -> NodeOut:
        """Operators: take the node out of service (idempotent; a second call updates the
        reason)."""
        data = self._send("POST", f"/v1/nodes/{_seg(node_id)}/quarantine",
                          body={"reason": reason}, safe_to_resend=True)
        return self._parse(NodeOut, data)

    def return_node(self, node_id: str, gpu: int | None = None) -> NodeOut:
        """Operators: put a quarantined node (or one of its GPUs, retired ones too) back into
        service (idempotent)."""
        params = None if gpu is None else {"gpu": gpu}
        data = self._send("POST", f"/v1/nodes/{_seg(node_id)}/return", params=params,
                          safe_to_resend=True)
        return self._parse(NodeOut, data)

    # -- health --------------------------------------------------------------------------------

    def inject_fault(self, node_id: str, kind: str, gpu: int | None = None,
                     xid: int | None = None, duration_s: float = 20.0) -> None:
        """Operators: a drill on a simulated node (kind: xid, ecc or heartbeat-loss)."""
        body = {"node": node_id, "kind": kind, "gpu": gpu, "xid": xid, "duration_s": duration_s}
        self._send("POST", "/v1/debug/faults", body=body)

    def list_faults(self, node_id: str | None = None, limit: int | None = None) -> list[FaultOut]:
        params = {"node": node_id} if node_id else None
        return self._pages("/v1/faults", FaultOut, params, limit)

    def xid_policy(self) -> XidPolicyOut:
        return self._get("/v1/admin/xid-policy", XidPolicyOut)

    def set_xid_policy(self, policy: Mapping[Any, Any]) -> XidPolicyOut:
        data = self._send("PUT", "/v1/admin/xid-policy", body={"policy": dict(policy)},
                          safe_to_resend=True)
        return self._parse(XidPolicyOut, data)

    def reset_xid_policy(self) -> XidPolicyOut:
        data = self._send("DELETE", "/v1/admin/xid-policy", safe_to_resend=True)
        return self._parse(XidPolicyOut, data)

    # -- accounts ------------------------------------------------------------------------------

    def create_tenant(self, name: str) -> TenantOut:
        return self._create("/v1/tenants", TenantOut, {"name": name})

    def list_tenants(self) -> list[TenantOut]:
        return self._pages("/v1/tenants", TenantOut)

    def create_user(
        self, name: str, tenant: str | None = None, role: str = "member"
    ) -> UserCreated:
        return self._create(
            "/v1/users", UserCreated, {"name": name, "tenant": tenant, "role": role}
        )

    def list_users(self) -> list[UserOut]:
        return self._pages("/v1/users", UserOut)

    def create_token(
        self, name: str = "cli", user: str | None = None, expires_in_s: int | None = None
    ) -> TokenCreated:
        return self._create(
            "/v1/tokens", TokenCreated, {"name": name, "user": user, "expires_in_s": expires_in_s}
        )

    def list_tokens(self) -> list[TokenOut]:
        return self._pages("/v1/tokens", TokenOut)

    def revoke_token(self, token_id: str) -> TokenOut:
        data = self._send("DELETE", f"/v1/tokens/{_seg(token_id)}", safe_to_resend=True)
        return self._parse(TokenOut, data)

    # -- billing -------------------------------------------------------------------------------

    def prices(self) -> PriceBookHistory:
        """The price book in force now and every version, oldest first."""
        return self._get("/v1/prices", PriceBookHistory)

    def set_price(
        self,
        model: str | None = None,
        gpu_hour: str | None = None,
        *,
        cpu_core_hour: str | None = None,
        memory_gib_hour: str | None = None,
        storage_gib_month: str | None = None,
        spot_discount_pct: int | None = None,
        server: str | None = None,
        server_hour: str | None = None,
    ) -> PriceBookOut:
        """A new price-book version effective now (operators): the prices given change, the
        others carry over. Amounts are exact decimal strings, e.g. ``"3600.00"``. ``server``
        and ``server_hour`` price a bare-metal server model per hour."""
        body = {
            "model": model,
            "gpu_hour": gpu_hour,
            "cpu_core_hour": cpu_core_hour,
            "memory_gib_hour": memory_gib_hour,
            "storage_gib_month": storage_gib_month,
            "spot_discount_pct": spot_discount_pct,
            "server": server,
            "server_hour": server_hour,
        }
        # Not keyed by the server: never resent, so that a retry cannot add a second version.
        data = self._send(
            "POST", "/v1/prices", body={k: v for k, v in body.items() if v is not None}
        )
        return self._parse(PriceBookOut, data)

    def wallet(self, tenant: str | None = None) -> WalletOut:
        """A tenant's wallet (default: the caller's): balance, burn rate and time left."""
        return self._get("/v1/wallet", WalletOut, {"tenant": tenant} if tenant else None)

    def buy_package(self, offer: str, idempotency_key: str | None = None) -> WalletOut:
        """Buy a prepaid card-hour package from the wallet; bought once, even if retried."""
        return self._create("/v1/packages", WalletOut, {"offer": offer}, idempotency_key)

    def usage(
        self,
        tenant: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[UsageOut]:
        """What was metered per job allocation started in [since, until); times without a zone
        are UTC."""
        params: dict[str, str] = {}
        if tenant:
            params["tenant"] = tenant
        if since is not None:
            params["from"] = _utc(since).isoformat()
        if until is not None:
            params["to"] = _utc(until).isoformat()
        data = self._send("GET", "/v1/usage", params=params or None, safe_to_resend=True)
        return [self._parse(UsageOut, item) for item in _list(data, self.url)]

    def estimate(self, spec: JobSpec | Mapping[str, Any]) -> Estimate:
        """The price of a job and whether the wallet and the fleet allow it now; submits nothing."""
        body = _job_spec(spec).model_dump(mode="json")
        data = self._send("POST", "/v1/estimates", body=body, safe_to_resend=True)
        return self._parse(Estimate, data)

    def topup(self, tenant: str, amount: str, ref: str | None = None) -> WalletOut:
        """Add money to a tenant's wallet (operators). The same ``ref`` twice is one top-up;
        without one, the request is still keyed so that a retry never pays twice."""
        return self._create(
            "/v1/admin/topups", WalletOut, {"tenant": tenant, "amount": amount, "ref": ref}
        )

    def credit(self, tenant: str, amount: str, reason: str, ref: str | None = None) -> WalletOut:
        """A credit or refund to a tenant's wallet, with its reason (operators)."""
        body = {"tenant": tenant, "amount": amount, "reason": reason, "ref": ref}
        return self._create("/v1/admin/credits", WalletOut, body)

    def verify_ledger(self) -> LedgerReport:
        """Check every ledger invariant (operators); ``ok`` is False with the violations."""
        return self._get("/v1/admin/ledger/verify", LedgerReport)

    def config(self) -> list[SettingOut]:
        """Every operator setting with its value and help."""
        data = self._send("GET", "/v1/admin/config", safe_to_resend=True)
        return [self._parse(SettingOut, item) for item in _list(data, self.url)]

    def get_config(self, key: str) -> SettingOut:
        return self._get(f"/v1/admin/config/{_seg(key)}", SettingOut)

    def set_config(self, key: str, value: str) -> SettingOut:
        """Change an operator setting; the server checks the value and answers the stored one."""
        data = self._send(
            "PUT", f"/v1/admin/config/{_seg(key)}", body={"value": value}, safe_to_resend=True
        )
        return self._parse(SettingOut, data)

    # -- quotas and budgets --------------------------------------------------------------------

    def limits(self, tenant: str | None = None) -> list[LimitOut]:
        """A tenant's quotas and budgets (default: the caller's), with what counts against them."""
        params = {"tenant": tenant} if tenant else None
        data = self._send("GET", "/v1/limits", params=params, safe_to_resend=True)
        return [self._parse(LimitOut, item) for item in _list(data, self.url)]

    def set_limit(
        self,
        tenant: str,
        kind: LimitKind | str,
        value: str,
        *,
        model: str | None = None,
        period: Period | str | None = None,
    ) -> list[LimitOut]:
        """Set a cap (``gpus``, ``compute-units``) or a budget (``card-hours``, ``spend`` with a
        ``period``) for a tenant (operators); the same kind, model and period replaces it."""
        body = {"tenant": tenant, "kind": str(kind), "value": value, "model": model}
        if period is not None:
            body["period"] = str(period)
        data = self._send("PUT", "/v1/admin/limits", body=body, safe_to_resend=True)
        return [self._parse(LimitOut, item) for item in _list(data, self.url)]

    def remove_limit(
        self,
        tenant: str,
        kind: LimitKind | str,
        *,
        model: str | None = None,
        period: Period | str | None = None,
    ) -> list[LimitOut]:
        params = {"tenant": tenant, "kind": str(kind)}
        if model:
            params["model"] = model
        if period is not None:
            params["period"] = str(period)
        data = self._send("DELETE", "/v1/admin/limits", params=params, safe_to_resend=True)
        return [self._parse(LimitOut, item) for item in _list(data, self.url)]

    # -- audit ---------------------------------------------------------------------------------

    def events(self, object_id: str | None = None, limit: int = 100) -> list[EventOut]:
        """The audit events the caller may see, newest first."""
        params = {"object_id": object_id} if object_id else None
        return self._pages("/v1/events", EventOut, params, limit)


def _job_spec(spec: JobSpec | Mapping[str, Any]) -> JobSpec:
    """A job request checked by the same rules as the server's; a mistake is a 422 ApiError."""
    if isinstance(spec, JobSpec):
        return spec
    try:
        return parse_job_spec(dict(spec))
    except InvalidRequest as err:
        raise ApiError(422, InvalidRequest.code, str(err)) from err


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _list(data: Any, url: str) -> list[Any]:
    if not isinstance(data, list):
        raise ApiError(
            0,
            "bad_response",
            f"unexpected answer from {url} (expected a list); are the client and server the "
            "same gpucloud version?",
        )
    return data


def _seg(value: str) -> str:
    """One path segment: an id typed by a user must not be able to change the route."""
    from urllib.parse import quote

    if not value.strip():
        raise ApiError(0, "invalid_request", "an id is required")
    return quote(value.strip(), safe="")


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(max(float(response.headers.get("Retry-After", "1")), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        return 1.0


__all__ = ["ApiError", "Client", "NoTokenError", "UnreachableError", "error_from_response"]
