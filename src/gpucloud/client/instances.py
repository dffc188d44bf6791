"""The SDK's instance calls, mixed into ``gpucloud.client.Client``; the shell's websocket too."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel

from gpucloud.core.instances import InstanceSpec, parse_instance_spec
from gpucloud.schemas.instances import IdlePolicyOut, InstanceOut

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

M = TypeVar("M", bound=BaseModel)


class InstancesMixin:
    if TYPE_CHECKING:  # provided by Client
        url: str
        token: str | None

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

    def create_instance(self, spec: InstanceSpec | Mapping[str, Any],
                        idempotency_key: str | None = None) -> InstanceOut:
        """Validated here by the server's rules, then created once even if retried."""
        spec = spec if isinstance(spec, InstanceSpec) else parse_instance_spec(dict(spec))
        return self._create("/v1/instances", InstanceOut, spec.model_dump(mode="json"),
                            idempotency_key)

    def list_instances(self, deleted: bool = False) -> list[InstanceOut]:
        return self._pages("/v1/instances", InstanceOut, {"deleted": str(deleted).lower()})

    def get_instance(self, ref: str) -> InstanceOut:
        """By id or name."""
        return self._get(f"/v1/instances/{_seg(ref)}", InstanceOut)

    def stop_instance(self, ref: str) -> InstanceOut:
        return self._act("POST", ref, "/stop")

    def start_instance(self, ref: str, no_gpu: bool = False) -> InstanceOut:
        return self._act("POST", ref, "/start", {"no_gpu": no_gpu})

    def delete_instance(self, ref: str) -> InstanceOut:
        return self._act("DELETE", ref, "")

    def report_utilization(self, ref: str, gpu_util_pct: int) -> InstanceOut:
        """For simulated GPUs: what their utilisation is now (real ones are read by NVML)."""
        return self._act("POST", ref, "/utilization", {"gpu_util_pct": gpu_util_pct})

    def _act(self, method: str, ref: str, suffix: str, body: Any = None) -> InstanceOut:
        data = self._send(method, f"/v1/instances/{_seg(ref)}{suffix}", body=body,
                          safe_to_resend=True)  # each is idempotent
        return self._parse(InstanceOut, data)

    def get_idle_policy(self, tenant: str | None = None) -> IdlePolicyOut:
        return self._get("/v1/instance-idle-policy", IdlePolicyOut, _tenant(tenant))

    def set_idle_policy(self, *, below_pct: int, idle: str | int, grace: str | int = 300,
                        action: str = "no-gpu", tenant: str | None = None) -> IdlePolicyOut:
        body = {"below_pct": below_pct, "idle": idle, "grace": grace, "action": action}
        data = self._send("PUT", "/v1/instance-idle-policy", params=_tenant(tenant), body=body,
                          safe_to_resend=True)
        return self._parse(IdlePolicyOut, data)

    def clear_idle_policy(self, tenant: str | None = None) -> None:
        self._send("DELETE", "/v1/instance-idle-policy", params=_tenant(tenant),
                   safe_to_resend=True)

    def open_shell(self, ref: str, rows: int = 24, cols: int = 80) -> ClientConnection:
        """A websocket to a shell inside the instance (see ``api.terminal`` for the frames)."""
        from websockets.sync.client import connect

        parts = urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        path = f"{parts.path.rstrip('/')}/v1/instances/{_seg(ref)}/shell"
        url = urlunsplit((scheme, parts.netloc, path, f"rows={rows}&cols={cols}", ""))
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return connect(url, additional_headers=headers, max_size=None, open_timeout=15)


def _tenant(tenant: str | None) -> dict[str, str] | None:
    return {"tenant": tenant} if tenant else None


def _seg(value: str) -> str:
    from gpucloud.client.client import _seg as segment

    return segment(value)
