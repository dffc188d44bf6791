"""What the launcher hands the engine for one attempt of a job: every replica with its node,
devices and complete environment (identity, checkpoint dir, pinning, torchrun's rendezvous)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from gpucloud.controllers.images import image_env
from gpucloud.controllers.workspaces import replica_workspace
from gpucloud.core.launch_env import Rendezvous, job_environment, rendezvous_port
from gpucloud.engines.base import Engine, LaunchSpec, ReplicaSpec
from gpucloud.store.models import Allocation, Device, Job, Node


def build_launch_spec(
    session: Session, engine: Engine, job: Job, allocations: list[Allocation]
) -> LaunchSpec:
    """``allocations`` in rank order; rank 0's node is the rendezvous."""
    master = session.get_one(Node, allocations[0].node_id)
    checkpoint_dir = engine.checkpoint_dir(job.id)
    port = rendezvous_port(allocations[0].id)
    replicas = []
    for rank, allocation in enumerate(allocations):
        devices = [session.get_one(Device, d) for d in allocation.device_ids]
        indexes = [d.index for d in devices]
        workspace = replica_workspace(session, engine, job, allocation.node_id,
                                      allocation.launch_attempted_at or job.updated_at)
        env = job_environment(
            user_env=job.spec.get("env", {}),
            job_id=job.id,
            job_name=job.name,
            allocation_id=allocation.id,
            node_id=allocation.node_id,
            checkpoint_dir=checkpoint_dir,
            restart_count=job.restart_count,
            gpu_model=devices[0].model if devices else None,
            device_indexes=indexes,
            simulated=any(d.simulated for d in devices),
            rendezvous=Rendezvous(rank, len(allocations), master.address, port),
        ) | image_env(session, engine, job, allocation.node_id)  # the venv of its image
        replicas.append(ReplicaSpec(
            allocation_id=allocation.id,
            node_id=allocation.node_id,
            rank=rank,
            device_indexes=indexes,
            env={**env, **workspace.env},  # GPUCLOUD_VOLUME_*, GPUCLOUD_DATASET_*
            cpu_milli=allocation.cpu_milli,
            memory_mib=allocation.memory_mib,
            mounts=workspace.mounts,
            cache_fills=workspace.cache_fills,
        ))
    return LaunchSpec(
        job_id=job.id,
        command=list(job.spec["command"]),
        replicas=replicas,
        time_limit_s=job.max_duration_s,
    )
