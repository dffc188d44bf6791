"""The SDK's volume and dataset calls, mixed into ``gpucloud.client.Client``."""

from __future__ import annotations

import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from gpucloud.core.datasets import check_dataset_name
from gpucloud.core.errors import InvalidRequest
from gpucloud.engines.storage_dirs import hash_tree
from gpucloud.schemas.workspaces import (
    DatasetOut,
    DatasetVersionOut,
    NodeCacheOut,
    VolumeOut,
    VolumeQuotaOut,
)

if TYPE_CHECKING:
    import httpx

M = TypeVar("M", bound=BaseModel)
Progress = Callable[[int, int], None]  # (bytes sent, bytes in all)
CHUNK = 1 << 20


class StorageMixin:
    if TYPE_CHECKING:  # provided by Client
        url: str
        _http: httpx.Client

        def _send(self, method: str, path: str, *, params: Any = None, body: Any = None,
                  headers: Mapping[str, str] | None = None,
                  safe_to_resend: bool = False) -> Any: ...

        def _parse(self, model: type[M], data: Any) -> M: ...

        def _get(self, path: str, model: type[M], params: Any = None) -> M: ...

        def _create(self, path: str, model: type[M], body: Any,
                    key: str | None = None) -> M: ...

        def _pages(self, path: str, model: type[M], params: Mapping[str, Any] | None = None,
                   limit: int | None = None) -> list[M]: ...

    # --- volumes ------------------------------------------------------------------------------

    def create_volume(self, name: str, size: str, idempotency_key: str | None = None
                      ) -> VolumeOut:
        return self._create("/v1/volumes", VolumeOut, {"name": name, "size": size},
                            idempotency_key)

    def list_volumes(self, deleted: bool = False) -> list[VolumeOut]:
        return self._pages("/v1/volumes", VolumeOut, {"deleted": str(deleted).lower()})

    def get_volume(self, ref: str) -> VolumeOut:
        return self._get(f"/v1/volumes/{_seg(ref)}", VolumeOut)

    def grow_volume(self, ref: str, size: str) -> VolumeOut:
        data = self._send("POST", f"/v1/volumes/{_seg(ref)}/grow", body={"size": size},
                          safe_to_resend=True)  # growing to the same size twice is refused
        return self._parse(VolumeOut, data)

    def delete_volume(self, ref: str) -> VolumeOut:
        return self._parse(VolumeOut, self._send("DELETE", f"/v1/volumes/{_seg(ref)}",
                                                 safe_to_resend=True))

    def volume_quota(self, tenant: str | None = None) -> VolumeQuotaOut:
        return self._get("/v1/volume-quota", VolumeQuotaOut,
                         {"tenant": tenant} if tenant else None)

    def set_volume_quota(self, gib: int | None, tenant: str | None = None) -> VolumeQuotaOut:
        """Operators; ``None`` returns the tenant to the platform's default."""
        data = self._send("PUT", "/v1/volume-quota", params={"tenant": tenant} if tenant else None,
                          body={"gib": gib}, safe_to_resend=True)
        return self._parse(VolumeQuotaOut, data)

    # --- datasets -----------------------------------------------------------------------------

    def create_dataset(self, name: str, idempotency_key: str | None = None) -> DatasetOut:
        return self._create("/v1/datasets", DatasetOut, {"name": name}, idempotency_key)

    def get_dataset(self, ref: str) -> DatasetOut:
        return self._get(f"/v1/datasets/{_seg(ref)}", DatasetOut)

    def list_datasets(self) -> list[DatasetOut]:
        return self._pages("/v1/datasets", DatasetOut)

    def dataset_versions(self, ref: str) -> list[DatasetVersionOut]:
        return self._pages(f"/v1/datasets/{_seg(ref)}/versions", DatasetVersionOut)

    def push_dataset(self, name: str, directory: str | Path,
                     progress: Progress | None = None) -> DatasetVersionOut:
        """Upload ``directory`` as a version of ``name`` (created if new). The server hashes
        the content: identical files give the existing version (``created`` False)."""
        from gpucloud.client.client import ApiError, error_from_response

        check_dataset_name(name)
        root = Path(directory)
        if not root.is_dir():
            raise InvalidRequest(f"{root} is not a directory")
        try:
            self.get_dataset(name)
        except ApiError as err:
            if err.status != 404:
                raise
            self.create_dataset(name)
        check_tree(root)
        # The server's hash over the same files: content it has already is not sent again.
        digest = hash_tree(root).hexdigest()
        known = self._pages(f"/v1/datasets/{_seg(name)}/versions", DatasetVersionOut,
                            {"content_hash": digest})
        if known:
            return known[0]
        with tempfile.TemporaryFile() as archive:
            total = write_tar(root, archive)
            archive.seek(0)
            response = self._http.post(
                f"/v1/datasets/{_seg(name)}/versions",
                content=_read(archive, total, progress),
                headers={"Content-Type": "application/x-tar", "Content-Length": str(total)},
                timeout=None)
        if response.is_error:
            raise error_from_response(response)
        return self._parse(DatasetVersionOut, response.json())

    def remove_dataset(self, name: str, version: str | None = None) -> None:
        path = f"/v1/datasets/{_seg(name)}"
        if version is not None:
            path += f"/versions/{_seg(version)}"
        self._send("DELETE", path, safe_to_resend=True)

    def dataset_cache(self) -> list[NodeCacheOut]:
        return self._pages("/v1/dataset-cache", NodeCacheOut)


def check_tree(root: Path) -> None:
    """A version holds plain files only: a link or special file is refused."""
    for path in root.rglob("*"):
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise InvalidRequest(f"{path}: only regular files and directories can be pushed "
                                 "(links and special files cannot)")


def write_tar(root: Path, out: IO[bytes]) -> int:
    """``root``'s files and directories (paths relative to it) as a tar stream; returns its
    size."""
    check_tree(root)
    with tarfile.open(fileobj=out, mode="w") as archive:
        for path in sorted(root.rglob("*")):
            archive.add(path, arcname=path.relative_to(root).as_posix(), recursive=False)
    return out.tell()


def _read(handle: IO[bytes], total: int, progress: Progress | None) -> Iterator[bytes]:
    sent = 0
    while chunk := handle.read(CHUNK):
        sent += len(chunk)
        if progress is not None:
            progress(sent, total)
        yield chunk


def _seg(value: str) -> str:
    from gpucloud.client.client import _seg as segment

    return segment(value)
