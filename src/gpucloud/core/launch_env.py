"""The environment the platform gives every job: identity, checkpoint dir and device pinning."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gpucloud.core.catalog import VISIBLE_ENV, find_model


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
) -> dict[str, str]:
    """User variables first, then ours (validation already forbids overriding ours)."""
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
