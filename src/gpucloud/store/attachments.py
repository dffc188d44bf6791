"""What a job attaches, checked against the database at submission: each volume and dataset
must be the submitting tenant's (else a 404 naming it), a full volume takes no new attachment
(409), and each dataset is pinned to a version (``name`` -> ``name:<hash>``), so every attempt
of the job reads the same files."""

from __future__ import annotations

from sqlalchemy.orm import Session

from gpucloud.core.datasets import parse_dataset_refs, short_version
from gpucloud.core.jobspec import JobSpec
from gpucloud.core.volumes import parse_mounts
from gpucloud.store.datasets import resolve_refs
from gpucloud.store.volumes import resolve_mounts


def check_attachments(session: Session, tenant_id: str, spec: JobSpec,
                      lock: bool = False, refuse_full: bool = True) -> JobSpec:
    """The spec with its datasets pinned; raises NotFound or Conflict. ``lock`` in the
    transaction that writes the job (``store.volumes.resolve_mounts``). A full volume is
    refused to what a user asks (``refuse_full``, before admission); the next run of an
    instance that already holds it is not (its controller would fail every pass)."""
    if not spec.volumes and not spec.datasets:
        return spec
    resolve_mounts(session, tenant_id, parse_mounts(spec.volumes), lock, refuse_full)
    found = resolve_refs(session, tenant_id, parse_dataset_refs(spec.datasets))
    pinned = [f"{d.name}:{short_version(v.content_hash)}" for d, v in found]
    return spec if pinned == spec.datasets else spec.model_copy(update={"datasets": pinned})
