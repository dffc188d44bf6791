"""The environment the platform gives every job: identity, checkpoint dir and device pinning."""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gpucloud.core.catalog import VISIBLE_ENV, find_model


@dataclass(frozen=True)
class Rendezvous:
    """Where the replicas of one launch meet, and which one this is (torchrun's vocabulary)."""

    rank: int  # this node's index, 0..nnodes-1
    nnodes: int
    master_addr: str  # rank 0's node
    master_port: int


def rendezvous_port(launch_id: str) -> int:
    """A port for rank 0 to listen on, the same for every replica and every re-launch of the
    same launch; spread over 20000-29999 so concurrent jobs on one node rarely meet."""
    return 20000 + zlib.crc32(launch_id.encode()) % 10000


def job_environment(
    *,
    user_env: Mapping[str, str],
    job_id: str,
    job_name: str | None,
    allocation_id: str,
    node_id: str,
    checkpoint_dir: str,
    restart_count: int,
    gpu_model: str | None,
    device_indexes: Sequence[int],
    simulated: bool,
    rendezvous: Rendezvous,
) -> dict[str, str]:
    """User variables first, then ours (validation already forbids overriding ours).

    Each node runs the command once. The rank variables follow torchrun: WORLD_SIZE counts
    processes (one per GPU, or one per node without GPUs), RANK is the global rank of this
    node's first process, LOCAL_WORLD_SIZE the processes per node; the PET_* copies let a bare
    ``torchrun train.py`` pick up the layout without flags.
    """
    env = dict(user_env)
    env.update(
        GPUCLOUD_JOB_ID=job_id,
        GPUCLOUD_JOB_NAME=job_name or "",
        GPUCLOUD_ALLOCATION_ID=allocation_id,
        GPUCLOUD_NODE_ID=node_id,
        GPUCLOUD_CHECKPOINT_DIR=checkpoint_dir,
        GPUCLOUD_RESTART_COUNT=str(restart_count),
        GPUCLOUD_GPUS=str(len(device_indexes)),
    )
    per_node = max(1, len(device_indexes))
    r = rendezvous
    env.update(
        MASTER_ADDR=r.master_addr,
        MASTER_PORT=str(r.master_port),
        NNODES=str(r.nnodes),
        NODE_RANK=str(r.rank),
        LOCAL_WORLD_SIZE=str(per_node),
        WORLD_SIZE=str(per_node * r.nnodes),
        RANK=str(r.rank * per_node),
        PET_NNODES=str(r.nnodes),
        PET_NODE_RANK=str(r.rank),
        PET_NPROC_PER_NODE=str(per_node),
        PET_MASTER_ADDR=r.master_addr,
        PET_MASTER_PORT=str(r.master_port),
    )
    # Hide every vendor's devices by default (an empty list means "none"), then reveal ours.
    for variable in VISIBLE_ENV.values():
        env[variable] = ""
    model = find_model(gpu_model) if gpu_model else None
    if model is not None and device_indexes:
        env[model.visible_env] = ",".join(str(i) for i in device_indexes)
    # CUDA numbers devices fastest-first by default; NVML (and so our indexes) by PCI bus.
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    if simulated and device_indexes:
        env["GPUCLOUD_SIMULATED_GPUS"] = "1"
    return env
