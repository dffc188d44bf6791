"""The SDK's image calls, mixed into ``gpucloud.client.Client``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from gpucloud.schemas.images import ImageOut

M = TypeVar("M", bound=BaseModel)


class ImagesMixin:
    if TYPE_CHECKING:  # provided by Client
        def _send(self, method: str, path: str, *, params: Any = None, body: Any = None,
                  headers: Mapping[str, str] | None = None,
                  safe_to_resend: bool = False) -> Any: ...

        def _parse(self, model: type[M], data: Any) -> M: ...

        def _get(self, path: str, model: type[M], params: Any = None) -> M: ...

        def _pages(self, path: str, model: type[M],
                   params: Mapping[str, Any] | None = None,
                   limit: int | None = None) -> list[M]: ...

    def list_images(self) -> list[ImageOut]:
        """The catalogue's presets, then your tenant's private images."""
        return self._pages("/v1/images", ImageOut)

    def get_image(self, ref: str) -> ImageOut:
        """A preset by name, or a private image by name or id; with its venv on each node."""
        return self._get(f"/v1/images/{_seg(ref)}", ImageOut)

    def save_image(self, instance: str, name: str) -> ImageOut:
        """Save an instance's environment (its image plus what was pip-installed in it) as a
        private image of your tenant. Not resent on a lost answer: a retry would find the name
        taken (409) rather than save twice."""
        data = self._send("POST", "/v1/images", body={"instance": instance, "name": name})
        return self._parse(ImageOut, data)

    def rebuild_image(self, ref: str, node: str | None = None) -> ImageOut:
        """Retry an image's failed builds (on one node, or wherever it failed)."""
        data = self._send("POST", f"/v1/images/{_seg(ref)}/rebuild",
                          params={"node": node} if node else None, safe_to_resend=True)
        return self._parse(ImageOut, data)

    def delete_image(self, ref: str) -> ImageOut:
        data = self._send("DELETE", f"/v1/images/{_seg(ref)}", safe_to_resend=True)
        return self._parse(ImageOut, data)


def _seg(value: str) -> str:
    from gpucloud.client.client import _seg as segment

    return segment(value)
