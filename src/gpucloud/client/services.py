"""The SDK's service calls, mixed into ``gpucloud.client.Client``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from pydantic import BaseModel

from gpucloud.core.services import parse_service_spec
from gpucloud.schemas.services import ServiceKey, ServiceOut, ServiceUpdate

M = TypeVar("M", bound=BaseModel)


class ServicesMixin:
    if TYPE_CHECKING:  # provided by Client
        url: str
        token: str | None
        timeout: float
        _http: httpx.Client

        def _send(self, method: str, path: str, *, params: Any = None, body: Any = None,
                  headers: Mapping[str, str] | None = None,
                  safe_to_resend: bool = False) -> Any: ...

        def _parse(self, model: type[M], data: Any) -> M: ...

        def _get(self, path: str, model: type[M], params: Any = None) -> M: ...

        def _create(self, path: str, model: type[M], body: Any,
                    key: str | None = None) -> M: ...

        def _pages(self, path: str, model: type[M],
                   params: Mapping[str, Any] | None = None,
                   limit: int | None = None) -> list[M]: ...

        def _transport_error(self, err: httpx.TransportError) -> Exception: ...

    def create_service(self, name: str, spec: Mapping[str, Any], public: bool = False,
                       idempotency_key: str | None = None) -> ServiceOut:
        """Validated here by the server's rules, then created once even if retried. A public
        service's key comes from ``issue_service_key``."""
        checked = parse_service_spec(dict(spec)).model_dump(mode="json")
        return self._create("/v1/services", ServiceOut,
                            {**checked, "name": name, "public": public}, idempotency_key)

    def list_services(self, deleted: bool = False) -> list[ServiceOut]:
        return self._pages("/v1/services", ServiceOut, {"deleted": str(deleted).lower()})

    def get_service(self, ref: str) -> ServiceOut:
        """By id or name."""
        return self._get(f"/v1/services/{_seg(ref)}", ServiceOut)

    def update_service(self, ref: str, **change: Any) -> ServiceOut:
        """Only the fields given change (``None`` clears an optional one). A change to what
        runs rolls out replica by replica."""
        body = ServiceUpdate.model_validate(change).model_dump(mode="json",
                                                               exclude_unset=True)
        data = self._send("PATCH", f"/v1/services/{_seg(ref)}", body=body,
                          safe_to_resend=True)  # the same change twice is one change
        return self._parse(ServiceOut, data)

    def delete_service(self, ref: str) -> ServiceOut:
        data = self._send("DELETE", f"/v1/services/{_seg(ref)}", safe_to_resend=True)
        return self._parse(ServiceOut, data)

    def issue_service_key(self, ref: str) -> ServiceKey:
        """Make the service public with a new key (the previous one stops working)."""
        return self._parse(ServiceKey, self._send("POST", f"/v1/services/{_seg(ref)}/key"))

    def revoke_service_key(self, ref: str) -> ServiceOut:
        data = self._send("DELETE", f"/v1/services/{_seg(ref)}/key", safe_to_resend=True)
        return self._parse(ServiceOut, data)

    def service_logs(self, ref: str, replica: int | None = None, follow: bool = False,
                     offset: int = 0) -> Iterator[bytes]:
        """One replica's output (``replica``: its ordinal; default the newest)."""
        params: dict[str, Any] = {"follow": "true" if follow else "false", "offset": offset}
        if replica is not None:
            params["replica"] = replica
        from gpucloud.client.client import NoTokenError, error_from_response

        if not self.token:
            raise NoTokenError()
        timeout = httpx.Timeout(self.timeout, read=None) if follow else self.timeout
        try:
            with self._http.stream("GET", f"/v1/services/{_seg(ref)}/logs", params=params,
                                   timeout=timeout) as response:
                if response.is_error:
                    response.read()
                    raise error_from_response(response)
                yield from response.iter_bytes()
        except httpx.TransportError as err:
            raise self._transport_error(err) from err

    def service_url(self, ref: str) -> str:
        """The endpoint's full URL (``/s/<tenant>/<name>/`` under the control plane)."""
        return self.url.rstrip("/") + self.get_service(ref).path


def _seg(value: str) -> str:
    from gpucloud.client.client import _seg as segment

    return segment(value)
