"""Offline simulations of the scheduler: 'gpucloud sim fgd' and 'gpucloud sim replay' (no
server involved)."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, TextIO, TypeVar

import typer

from gpucloud.cli.common import JsonFlag
from gpucloud.cli.errors import InputError
from gpucloud.cli.output import console, print_json
from gpucloud.scheduling.fgd_sim import parse_seeds, run_seeds, summarise
from gpucloud.scheduling.model import Node, Workload
from gpucloud.scheduling.registry import POLICIES
from gpucloud.scheduling.replay import percentile, replay, timed_pods
from gpucloud.scheduling.scheduler import SchedulerConfig
from gpucloud.scheduling.traces import (
    PodTimes,
    TraceError,
    parse_nodes,
    parse_pods_with_times,
)

sim_app = typer.Typer(
    help="Offline simulations (no server needed): the scheduler on trace files, and ETTR "
    "under faults.",
    no_args_is_help=True,
)

DEFAULT_POLICY = "fragaware"
T = TypeVar("T")


def _read(path: Path, flag: str, parse: Callable[[TextIO], list[T]], what: str) -> list[T]:
    """Parse a CSV file given by ``flag``; any failure is one error line naming the file."""
    try:
        with path.open(newline="") as handle:
            rows = parse(handle)
    except (OSError, UnicodeDecodeError, csv.Error, TraceError) as err:
        raise InputError(f"{flag} {path}: {_reason(err)}") from None
    if not rows:
        raise InputError(f"{flag} {path}: no {what} in the file")
    return rows


def _load_nodes(path: Path) -> list[Node]:
    return _read(path, "--nodes", parse_nodes, "nodes")


def _load_pods(path: Path) -> list[Workload]:
    return [workload for workload, _ in _load_rows(path)]


def _reason(err: Exception) -> str:
    if isinstance(err, FileNotFoundError):
        return "no such file"
    if isinstance(err, IsADirectoryError):
        return "is a directory, not a CSV file"
    if isinstance(err, OSError):
        return err.strerror or str(err)
    if isinstance(err, UnicodeDecodeError):
        return "not a text (UTF-8) CSV file"
    return str(err)


@sim_app.command("fgd")
def fgd(
    nodes: Annotated[
        Path,
        typer.Option("--nodes", help="Node list CSV: sn,cpu_milli,memory_mib,gpu,model."),
    ],
    pods: Annotated[
        Path,
        typer.Option(
            "--pods",
            help="Pod list CSV: name,cpu_milli,memory_mib,num_gpu,gpu_milli "
            "[,gpu_spec (models allowed, A|B), ...].",
        ),
    ],
    policy: Annotated[
        str,
        typer.Option("--policy", help=f"One of {', '.join(POLICIES)}."),
    ] = DEFAULT_POLICY,
    seeds: Annotated[
        str,
        typer.Option("--seeds", help="Seeds: a range like 42-51 or a list like 1,2,5."),
    ] = "42-51",
    tune: Annotated[
        float,
        typer.Option("--tune", help="Arrived GPU request as a multiple of the GPU capacity."),
    ] = 1.3,
    jobs: Annotated[
        int, typer.Option("--jobs", min=1, help="Seeds simulated in parallel processes.")
    ] = 1,
    as_json: JsonFlag = False,
) -> None:
    """Replay a pod list under the FGD paper's protocol; % of GPU allocated at 100% arrival.

    Per seed, the pods are shuffled and tuned to --tune x the GPU capacity, then arrive in
    order and never leave. Prints the mean over the seeds of the share of GPU milli allocated
    when the arrived GPU request reaches 100% of capacity; --json adds the per-seed values and
    the mean curve (allocated % at 0%, 1%, ... 100% arrived).
    """
    if policy not in POLICIES:
        raise InputError(f"--policy {policy!r}: choose one of {', '.join(POLICIES)}")
    try:
        seed_list = parse_seeds(seeds)
    except ValueError as err:
        raise InputError(f"--seeds: {err}") from None
    if tune <= 0:
        raise InputError("--tune must be positive (1.3 = 130% of GPU capacity)")
    node_list = _load_nodes(nodes)
    pod_list = _load_pods(pods)
    try:
        results = run_seeds(node_list, pod_list, POLICIES[policy], seed_list, jobs, tune)
    except ValueError as err:  # e.g. no GPUs in the node list, none requested by the pods
        raise InputError(f"cannot simulate: {err}") from None
    summary = summarise(results)
    if as_json:
        print_json({
            "policy": policy,
            "nodes": str(nodes),
            "pods": str(pods),
            "seeds": seed_list,
            "tune": tune,
            **summary,
            "placed": {str(r.seed): r.placed for r in results},
            "failed": {str(r.seed): r.failed for r in results},
        })
        return
    gpus = sum(len(n.devices) for n in node_list)
    console.print(
        f"{policy}: {summary['alloc_pct_at_100']:.2f}% of GPU allocated at 100% arrival "
        f"(mean of {len(results)} seed{'s' if len(results) != 1 else ''}; "
        f"{len(pod_list)} pods on {len(node_list)} nodes, {gpus} GPUs, tune {tune:g})",
        markup=False,
    )
    for r in results:
        console.print(
            f"  seed {r.seed}: {r.alloc_pct_at_100:.2f}%  ({r.placed} placed, {r.failed} failed)",
            markup=False,
        )


@sim_app.command("replay")
def replay_trace(
    nodes: Annotated[
        Path,
        typer.Option("--nodes", help="Node list CSV: sn,cpu_milli,memory_mib,gpu,model."),
    ],
    pods: Annotated[
        Path,
        typer.Option(
            "--pods",
            help="Pod list CSV with creation_time, deletion_time and scheduled_time (seconds).",
        ),
    ],
    policy: Annotated[
        str,
        typer.Option("--policy", help=f"One of {', '.join(POLICIES)}."),
    ] = DEFAULT_POLICY,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Replay only the first N pods to arrive.")
    ] = None,
    tick: Annotated[
        int,
        typer.Option("--tick", min=1, help="Seconds of trace time coalesced into one pass."),
    ] = 60,
    compress: Annotated[
        float,
        typer.Option(
            "--compress",
            min=1.0,
            help="Divide arrival times by this (run times unchanged) to load the cluster more.",
        ),
    ] = 1.0,
    preemption: Annotated[
        bool, typer.Option(help="Let higher-priority pods preempt (least lost work first).")
    ] = True,
    as_json: JsonFlag = False,
) -> None:
    """Replay a trace in time through the real queueing (fair share, gangs, backfill,
    preemption): utilisation over time, wait-time and completion-time percentiles.

    Pods arrive at creation_time and run for deletion_time - scheduled_time once started
    (pods without times arrive at 0 and never end). Waits are measured to the pass that
    started the pod, so to within --tick seconds.
    """
    if policy not in POLICIES:
        raise InputError(f"--policy {policy!r}: choose one of {', '.join(POLICIES)}")
    node_list = _load_nodes(nodes)
    timed = sorted(
        (replace(p, arrival_s=int(p.arrival_s / compress)) for p in timed_pods(_load_rows(pods))),
        key=lambda p: (p.arrival_s, p.workload.id),
    )
    timed = timed[:limit] if limit else timed
    result = replay(node_list, timed, POLICIES[policy], SchedulerConfig(preemption=preemption),
                    tick_s=tick)
    waits = list(result.waits_s.values())
    jcts = list(result.completions_s.values())
    summary = {
        "policy": policy,
        "compress": compress,
        "pods": len(timed),
        "started": len(waits),
        "completed": len(jcts),
        "never_started": len(result.never_started),
        "preemptions": result.preemptions,
        "passes": result.passes,
        "utilisation_pct": round(result.utilisation_pct(), 2),
        "wait_s": {f"p{q}": percentile(waits, q) for q in (50, 90, 99)},
        "completion_s": {f"p{q}": percentile(jcts, q) for q in (50, 90, 99)},
    }
    if as_json:
        print_json({**summary, "utilisation_over_time": [list(s) for s in result.samples]})
        return
    console.print(
        f"{policy}: {len(timed)} pods, {len(waits)} started, {len(jcts)} completed, "
        f"{len(result.never_started)} never started, {result.preemptions} preemptions "
        f"({result.passes} passes, tick {tick}s, arrivals compressed x{compress:g})",
        markup=False,
    )
    console.print(f"  GPU allocated, time-weighted mean: {summary['utilisation_pct']:.2f}%",
                  markup=False)
    for label, key in (("wait", "wait_s"), ("completion time", "completion_s")):
        values = summary[key]
        assert isinstance(values, dict)
        shown = ", ".join(f"{k} {_seconds(v)}" for k, v in values.items())
        console.print(f"  {label}: {shown}", markup=False)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}s"


def _load_rows(path: Path) -> list[tuple[Workload, PodTimes]]:
    return _read(path, "--pods", parse_pods_with_times, "pods")


def register(app: typer.Typer) -> None:
    app.add_typer(sim_app, name="sim")
