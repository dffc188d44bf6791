"""The SDK's fleet calls (the asset register, the cost report, bare-metal leases), mixed into
``gpucloud.client.Client``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from gpucloud.core.fleet import Record
from gpucloud.schemas.fleet import (
    AssetImportOut,
    AssetOut,
    BareMetalLeaseOut,
    BareMetalServerOut,
    BootImageOut,
    FleetReportOut,
)

M = TypeVar("M", bound=BaseModel)


class FleetMixin:
    if TYPE_CHECKING:  # provided by Client
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

    # -- the asset register (operators) ----------------------------------------------------------

    def import_assets(self, records: Sequence[Record] | str | Path) -> AssetImportOut:
        """Create or update assets by name, all or nothing; the same records twice change
        nothing. A path is read here (YAML or CSV; ``InvalidAssets`` names the line of what
        does not parse); the records carry their lines, so the server's problems name them too."""
        if isinstance(records, str | Path):
            from gpucloud.fleet_import import read_file

            records = read_file(Path(records))
        body = {"assets": [{"line": r.line, "kind": r.kind, "values": dict(r.values)}
                           for r in records]}
        # An import is idempotent by name: resending it is harmless.
        data = self._send("POST", "/v1/assets/import", body=body, safe_to_resend=True)
        return self._parse(AssetImportOut, data)

    def list_assets(self, kind: str | None = None, retired: bool = False) -> list[AssetOut]:
        params: dict[str, Any] = {"retired": str(retired).lower()}
        if kind:
            params["kind"] = kind
        return self._pages("/v1/assets", AssetOut, params)

    def get_asset(self, name: str) -> AssetOut:
        return self._get(f"/v1/assets/{_seg(name)}", AssetOut)

    def update_asset(self, name: str, values: Mapping[str, Any]) -> AssetOut:
        """Change fields, in the words of an import file (e.g. ``{"rack": "r2"}``)."""
        data = self._send("PATCH", f"/v1/assets/{_seg(name)}", body={"values": dict(values)},
                          safe_to_resend=True)
        return self._parse(AssetOut, data)

    def retire_asset(self, name: str, reason: str) -> AssetOut:
        data = self._send("POST", f"/v1/assets/{_seg(name)}/retire", body={"reason": reason},
                          safe_to_resend=True)
        return self._parse(AssetOut, data)

    def fleet_report(self, days: int = 30, power_price: str = "0.15") -> FleetReportOut:
        return self._get("/v1/fleet/report", FleetReportOut,
                         {"days": days, "power_price": power_price})

    def set_bmc_credentials(self, name: str, username: str, password: str) -> AssetOut:
        """The BMC login of a server (stored for the controller; never shown again)."""
        data = self._send("PUT", f"/v1/assets/{_seg(name)}/bmc-credentials",
                          body={"username": username, "password": password},
                          safe_to_resend=True)
        return self._parse(AssetOut, data)

    # -- bare metal ---------------------------------------------------------------------------

    def list_baremetal(self, all_states: bool = False) -> list[BareMetalServerOut]:
        """Servers leasable whole: available ones (all of them, in any state, for operators
        asking ``all_states``), with hardware and price per hour."""
        return self._pages("/v1/baremetal/servers", BareMetalServerOut,
                           {"all": str(all_states).lower()})

    def lease_baremetal(self, *, model: str | None = None, server: str | None = None,
                        image: str | None = None,
                        idempotency_key: str | None = None) -> BareMetalLeaseOut:
        body = {"model": model, "server": server, "image": image}
        return self._create("/v1/baremetal/leases", BareMetalLeaseOut, body, idempotency_key)

    def list_baremetal_leases(self, ended: bool = False) -> list[BareMetalLeaseOut]:
        return self._pages("/v1/baremetal/leases", BareMetalLeaseOut,
                           {"ended": str(ended).lower()})

    def get_baremetal_lease(self, lease_id: str) -> BareMetalLeaseOut:
        return self._get(f"/v1/baremetal/leases/{_seg(lease_id)}", BareMetalLeaseOut)

    def power_baremetal(self, lease_id: str, action: str) -> BareMetalLeaseOut:
        """``on``, ``off`` or ``reset`` through the server's BMC."""
        return self._lease_act(lease_id, "/power", {"action": action})

    def reimage_baremetal(self, lease_id: str, image: str | None = None) -> BareMetalLeaseOut:
        return self._lease_act(lease_id, "/reimage", {"image": image})

    def release_baremetal(self, lease_id: str) -> BareMetalLeaseOut:
        return self._lease_act(lease_id, "/release", None)

    def _lease_act(self, lease_id: str, suffix: str, body: Any) -> BareMetalLeaseOut:
        data = self._send("POST", f"/v1/baremetal/leases/{_seg(lease_id)}{suffix}", body=body,
                          safe_to_resend=True)  # each is idempotent
        return self._parse(BareMetalLeaseOut, data)

    def return_baremetal(self, server: str) -> BareMetalServerOut:
        """Operators: a server out of maintenance (it is cleaned, then available)."""
        data = self._send("POST", f"/v1/baremetal/servers/{_seg(server)}/return",
                          safe_to_resend=True)
        return self._parse(BareMetalServerOut, data)

    def maintain_baremetal(self, server: str, reason: str) -> BareMetalServerOut:
        """Operators: a server out of service now, with the reason."""
        data = self._send("POST", f"/v1/baremetal/servers/{_seg(server)}/maintenance",
                          body={"reason": reason}, safe_to_resend=True)
        return self._parse(BareMetalServerOut, data)

    def add_boot_image(self, name: str, url: str, wipe: bool = False) -> BootImageOut:
        data = self._send("PUT", f"/v1/baremetal/images/{_seg(name)}",
                          body={"url": url, "purpose": "wipe" if wipe else "os"},
                          safe_to_resend=True)
        return self._parse(BootImageOut, data)

    def list_boot_images(self) -> list[BootImageOut]:
        return self._pages("/v1/baremetal/images", BootImageOut)


def _seg(value: str) -> str:
    from gpucloud.client.client import _seg as segment

    return segment(value)
