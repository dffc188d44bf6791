"""One launch as one Slurm batch job: the sbatch request, the batch script, the per-node task
script and each replica's environment file. Pure: text and values, no I/O.

A gang is one allocation (``-N`` with the pinned node list) running one task per node through
``srun``; each task finds its replica by ``$SLURMD_NODENAME`` and loads that replica's
environment (ranks, MASTER_ADDR, ...). Slurm's own ``CUDA_VISIBLE_DEVICES`` is kept: Slurm, not
gpucloud, picks which of the node's GPUs the job gets. Exit codes go to files in the run
directory, which outlives squeue's memory of the job.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gpucloud.core.catalog import VISIBLE_ENV
from gpucloud.core.datasets import dataset_env_name
from gpucloud.core.errors import EngineError
from gpucloud.core.volumes import link_path
from gpucloud.engines.base import LaunchSpec, ReplicaSpec
from gpucloud.engines.mount_ns import mount_script

JOB_NAME_PREFIX = "gpucloud-"
NOT_IN_LAUNCH_EXIT = 97  # a task on a node that is not one of the launch's replicas
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VISIBLE = frozenset(VISIBLE_ENV.values())
_DATASET_ENV = dataset_env_name("")  # GPUCLOUD_DATASET_: the replica reads a dataset
NO_NAMESPACE_NOTE = ("gpucloud: volumes are linked into the working directory, not mounted (the "
                     "job does not run as root on this node, or unshare is missing), so ':ro' "
                     "volumes and datasets are protected only by file modes")


def job_name(launch_id: str) -> str:
    """The Slurm job name that carries the launch id: how a restarted engine re-adopts it."""
    return JOB_NAME_PREFIX + launch_id


def launch_of(name: str) -> str | None:
    return name[len(JOB_NAME_PREFIX):] if name.startswith(JOB_NAME_PREFIX) else None


def time_limit_minutes(time_limit_s: int | None, margin_s: int) -> int | None:
    """Slurm's --time, past gpucloud's own max duration (plus its stop grace) by a margin, so
    that gpucloud stops the job first and Slurm's limit is only a backstop."""
    if time_limit_s is None:
        return None
    margin = max(margin_s, time_limit_s // 10)
    return max(1, math.ceil((time_limit_s + margin) / 60))


def env_file(run_dir: Path, rank: int) -> Path:
    """The environment of one replica, which its task (and a shell in it) sources."""
    return run_dir / f"env-{rank}.sh"


@dataclass(frozen=True)
class RunPaths:
    run_dir: Path
    work_dir: Path

    @property
    def batch_script(self) -> Path:
        return self.run_dir / "batch.sh"

    @property
    def task_script(self) -> Path:
        return self.run_dir / "task.sh"

    @property
    def batch_log(self) -> Path:
        return self.run_dir / "batch.log"

    def env_file(self, rank: int) -> Path:
        return env_file(self.run_dir, rank)

    def rank_log(self, rank: int) -> Path:
        return self.run_dir / f"rank-{rank}.log"


@dataclass(frozen=True)
class Submission:
    """What sbatch (or slurmrestd's job/submit) is asked for; the same for both APIs."""

    name: str
    comment: str
    script: str  # the batch script's text (also written to paths.batch_script)
    script_path: Path
    nodelist: tuple[str, ...]  # pinned: gpucloud placed, Slurm executes
    tasks_per_node: int  # replicas per node (the scheduling core may stack a gang on a node)
    gres: str | None  # per node, e.g. "gpu:h100:2"
    cpus_per_task: int
    memory_mib: int | None  # per node
    time_limit_min: int | None
    partition: str | None
    output: Path
    workdir: Path


@dataclass(frozen=True)
class Rendered:
    submission: Submission
    task_script: str
    env_files: Mapping[int, str]  # rank -> file text (holds the user's secrets: write 0600)


def _env_text(replica: ReplicaSpec) -> str:
    lines = ["# gpucloud: the environment of this replica (sourced by task.sh)"]
    for key, value in replica.env.items():
        if not _ENV_NAME.fullmatch(key):
            raise EngineError(f"allocation {replica.allocation_id}: {key!r} is not a valid "
                              "environment variable name")
        # With GPUs, Slurm's CUDA_VISIBLE_DEVICES names the ones it gave the job: keep it.
        if replica.device_indexes and key in _VISIBLE:
            continue
        lines.append(f"export {key}={shlex.quote(value)}")
    return "\n".join(lines) + "\n"


def _layout(spec: LaunchSpec) -> tuple[list[str], dict[str, list[ReplicaSpec]]]:
    """The launch's distinct nodes (in rank order) and each node's replicas (in rank order).
    The scheduling core may put several members of a gang on one node."""
    per_node: dict[str, list[ReplicaSpec]] = {}
    for replica in sorted(spec.replicas, key=lambda r: r.rank):
        per_node.setdefault(replica.node_id, []).append(replica)
    return list(per_node), per_node


def _task_text(spec: LaunchSpec, paths: RunPaths, per_node: Mapping[str, list[ReplicaSpec]],
               gpus_per_task: int, read_only_dirs: Sequence[Path]) -> str:
    run = shlex.quote(str(paths.run_dir))
    namespace = _namespace(spec, read_only_dirs)
    prefix = '"${gpucloud_ns[@]}" ' if namespace else ""
    cases = "\n".join(
        f"  {shlex.quote(f'{node}:{local}')}) rank={replica.rank} ;;"
        for node, replicas in per_node.items() for local, replica in enumerate(replicas)
    )
    several = any(len(replicas) > 1 for replicas in per_node.values())
    # Several replicas on one node share the job's GPUs there: each takes its own slice of
    # the devices Slurm gave the job (in Slurm's order), never gpucloud's indexes.
    share = "" if not (several and gpus_per_task) else f"""
if [ -n "${{CUDA_VISIBLE_DEVICES:-}}" ]; then
  IFS=, read -ra gpucloud_all <<<"$CUDA_VISIBLE_DEVICES"
  gpucloud_mine=("${{gpucloud_all[@]:$((local * {gpus_per_task})):{gpus_per_task}}}")
  CUDA_VISIBLE_DEVICES=$(IFS=,; echo "${{gpucloud_mine[*]}}")
  export CUDA_VISIBLE_DEVICES
fi"""
    return f"""#!/bin/bash
# gpucloud: one replica of launch {spec.launch_id} (job {spec.job_id}), chosen by node name
# and the task's number on that node.
RUN={run}
local=${{SLURM_LOCALID:-0}}
case "$SLURMD_NODENAME:$local" in
{cases}
  *) echo "gpucloud: task $local on '$SLURMD_NODENAME' is not in launch {spec.launch_id}" >&2
     exit {NOT_IN_LAUNCH_EXIT} ;;
esac
exec >"$RUN/rank-$rank.log" 2>&1 </dev/null
. "$RUN/env-$rank.sh" || exit {NOT_IN_LAUNCH_EXIT}{share}
cd {shlex.quote(str(paths.work_dir))} || exit {NOT_IN_LAUNCH_EXIT}{_mount_links(spec)}{namespace}
# A handler (not an ignore, which the command would inherit): SIGTERM ends the command, and
# this shell lives on to record its exit code.
trap 'true' TERM
{prefix}{shlex.join(spec.command)}
code=$?
printf '%s\\n' "$code" >"$RUN/exit-$rank.tmp" && mv -f "$RUN/exit-$rank.tmp" "$RUN/exit-$rank"
exit "$code"
"""


def _mount_links(spec: LaunchSpec) -> str:
    """Volumes (the same on every replica) linked at their paths inside the working directory,
    as the local engine does: no bind mount without privileges or a container."""
    lines = []
    for mount in spec.replicas[0].mounts:
        link = shlex.quote(str(link_path(mount.path)))
        lines.append(f"mkdir -p \"$(dirname {link})\" && ln -sfn {shlex.quote(mount.source)} "
                     f"{link}")
    return "".join("\n" + line for line in lines)


def _namespace(spec: LaunchSpec, read_only_dirs: Sequence[Path]) -> str:
    """With volumes or datasets, the command runs in a mount namespace of its own, as on the
    local engine (``mount_ns``): volumes bind-mounted at their paths, ``:ro`` ones and the
    dataset store read-only. Whether the node allows it (the job runs as root there, with
    util-linux unshare) is probed on the node; if not, the links above stand and the rank's
    log says what is not enforced."""
    replica = spec.replicas[0]
    uses_datasets = any(k.startswith(_DATASET_ENV) for k in replica.env)
    if not replica.mounts and not uses_datasets:
        return ""
    script = mount_script(replica.mounts, read_only_dirs if uses_datasets else (),
                          "/bin/mkdir", "/bin/mount")
    unshare = "/usr/bin/unshare --mount --propagation private"
    return f"""
gpucloud_ns=()
if [ "$(id -u)" = 0 ] && [ -x /usr/bin/unshare ] && {unshare} /bin/true 2>/dev/null; then
  gpucloud_ns=({unshare} /bin/sh -c {shlex.quote(script)} gpucloud-mounts)
else
  echo {shlex.quote(NO_NAMESPACE_NOTE)}
fi"""


def _batch_text(spec: LaunchSpec, paths: RunPaths, nodes: int, per_node: int) -> str:
    if nodes == 1 and per_node == 1:  # one task: no job step needed, the batch shell runs it
        run_task = '/bin/bash "$RUN/task.sh"'
    else:
        run_task = (f"srun --nodes={nodes} --ntasks={nodes * per_node} "
                    f"--ntasks-per-node={per_node} --kill-on-bad-exit=1 "
                    '--export=ALL /bin/bash "$RUN/task.sh"')
    return f"""#!/bin/bash
# gpucloud: launch {spec.launch_id} of job {spec.job_id}, {len(spec.replicas)} replica(s).
RUN={shlex.quote(str(paths.run_dir))}
printf '%s\\n' "$SLURM_JOB_ID" >"$RUN/started.tmp" && mv -f "$RUN/started.tmp" "$RUN/started"
trap 'true' TERM
{run_task}
code=$?
printf '%s\\n' "$code" >"$RUN/exit_code.tmp" && mv -f "$RUN/exit_code.tmp" "$RUN/exit_code"
exit "$code"
"""


def _gres_type(spec: LaunchSpec, gres_types: Mapping[str, Sequence[str | None]]) -> str | None:
    types = set()
    for replica in spec.replicas:
        node_types = gres_types.get(replica.node_id)
        if node_types is None:
            raise EngineError(f"launch {spec.launch_id}: Slurm does not report node "
                              f"{replica.node_id!r}")
        try:
            types |= {node_types[i] for i in replica.device_indexes}
        except IndexError as err:
            raise EngineError(f"launch {spec.launch_id}: node {replica.node_id} has "
                              f"{len(node_types)} GPUs in Slurm, not the indexes "
                              f"{list(replica.device_indexes)}") from err
    if len(types) != 1:
        raise EngineError(f"launch {spec.launch_id}: the replicas' GPUs are of different "
                          f"Slurm GRES types {sorted(str(t) for t in types)}")
    return types.pop()


def render(
    spec: LaunchSpec,
    paths: RunPaths,
    gres_types: Mapping[str, Sequence[str | None]],
    *,
    partition: str | None,
    time_margin_s: int,
    read_only_dirs: Sequence[Path] = (),
) -> Rendered:
    """``gres_types``: each node's GPUs as GRES types, by gpucloud's device index.

    One Slurm job asks every node for the same resources, so a launch must put the same
    number of equal replicas on each of its nodes (one per node, or all on one node, as the
    scheduling core places gangs); anything else is refused with a clear error."""
    if not spec.command:
        raise EngineError(f"launch {spec.launch_id}: empty command")
    nodes, per_node = _layout(spec)
    counts = {len(replicas) for replicas in per_node.values()}
    if len(counts) != 1:
        spread = ", ".join(f"{n}: {len(r)}" for n, r in per_node.items())
        raise EngineError(f"launch {spec.launch_id}: one Slurm job runs the same number of "
                          f"replicas on every node, but this launch spreads them {spread}")
    tasks_per_node = counts.pop()
    gpu_counts = {len(r.device_indexes) for r in spec.replicas}
    if len(gpu_counts) != 1:
        raise EngineError(f"launch {spec.launch_id}: Slurm gives every node of a job the same "
                          f"GPU count, but the replicas ask for {sorted(gpu_counts)}")
    gpus = gpu_counts.pop()
    gres = None
    if gpus:
        gres_type = _gres_type(spec, gres_types)
        per_node_gpus = gpus * tasks_per_node
        gres = f"gpu:{gres_type}:{per_node_gpus}" if gres_type else f"gpu:{per_node_gpus}"
    cpus = max(1, math.ceil(max(r.cpu_milli for r in spec.replicas) / 1000))
    memory = max(r.memory_mib for r in spec.replicas) * tasks_per_node or None
    batch = _batch_text(spec, paths, len(nodes), tasks_per_node)
    submission = Submission(
        name=job_name(spec.launch_id),
        comment=f"gpucloud job={spec.job_id} launch={spec.launch_id}",
        script=batch,
        script_path=paths.batch_script,
        nodelist=tuple(nodes),
        tasks_per_node=tasks_per_node,
        gres=gres,
        cpus_per_task=cpus,
        memory_mib=memory,
        time_limit_min=time_limit_minutes(spec.time_limit_s, time_margin_s),
        partition=partition,
        output=paths.batch_log,
        workdir=paths.work_dir,
    )
    return Rendered(
        submission=submission,
        task_script=_task_text(spec, paths, per_node, gpus, read_only_dirs),
        env_files={r.rank: _env_text(r) for r in spec.replicas},
    )
