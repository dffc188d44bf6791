"""The SDK's control-plane calls (docs/ha.md), mixed into ``gpucloud.client.Client``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from gpucloud.schemas.control import LeaderOut

M = TypeVar("M", bound=BaseModel)


class ControlMixin:
    if TYPE_CHECKING:  # provided by Client

        def _get(self, path: str, model: type[M], params: Any = None) -> M: ...

    def leader(self) -> LeaderOut:
        """Which replica runs the controllers, under which fencing token (operators)."""
        return self._get("/v1/admin/leader", LeaderOut)
