"""Job commands: run, ps, show, logs, cancel and wait. Thin: parse, call the SDK, render."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from gpucloud.cli import render
from gpucloud.cli.common import JsonFlag, client
from gpucloud.cli.errors import InputError
from gpucloud.cli.output import console, duration, err_console, print_json
from gpucloud.cli.taskfile import build_spec
from gpucloud.core.states import TERMINAL, JobState
from gpucloud.schemas import Estimate, JobOut

ACTIVE_STATES = [s.value for s in JobState if s not in TERMINAL]


def exit_code_of(job: JobOut) -> int:
    """What a shell should see: the job's own exit code, else 0 for success and 1 otherwise."""
    code = job.exit_code
    if job.state is JobState.SUCCEEDED:
        return 0 if code is None else code
    if code is None or code == 0 or not 0 <= code <= 255:
        return 1
    return code


def summary(job: JobOut) -> str:
    """One line for stderr once a job has ended."""
    code = "" if job.exit_code is None else f" with exit code {job.exit_code}"
    detail = f": {job.message}" if job.message else ""
    return f"job {job.id} {job.state.value}{code} ({job.reason}){detail}"


def _wait(job: JobOut, quiet: bool, timeout: float | None = None) -> JobOut:
    """Wait for the end; unless quiet, say on stderr each time the state changes."""
    seen = [job.state]

    def progress(current: JobOut) -> None:
        if current.state != seen[-1]:
            seen.append(current.state)
            why = f": {current.message}" if current.message else ""
            err_console.print(f"{current.id} {current.state.value}{why}", markup=False)

    with client() as api:
        return api.wait_job(job.id, timeout=timeout, on_poll=None if quiet else progress)


def allowed_now(estimate: Estimate) -> bool:
    return estimate.funds_ok and estimate.fits_fleet and estimate.quota_ok


def print_estimate(estimate: Estimate) -> None:
    """What ``run --dry-run`` says: the price, the balance, and whether it could start now."""

    def verdict(ok: bool, message: str) -> str:
        return f"{'ok' if ok else 'no'}: {message}"

    lines = [("price", f"{render.money(estimate.price_per_hour)} per hour")]
    if estimate.max_duration_s is not None and estimate.cost_for_max_duration is not None:
        cost = render.money(estimate.cost_for_max_duration)
        lines.append(("max time", f"{duration(estimate.max_duration_s)}: at most {cost}"))
    balance = render.money(estimate.balance) if estimate.balance is not None else "not billed"
    lines.append(("balance", balance))
    lines.append(("funds", verdict(estimate.funds_ok, estimate.funds_message)))
    lines.append(("fleet", verdict(estimate.fits_fleet, estimate.fits_message)))
    lines.append(("quota", verdict(estimate.quota_ok, estimate.quota_message)))
    for label, value in lines:
        console.print(f"{label:<10}{value}", markup=False)
    would = "would" if allowed_now(estimate) else "would not"
    console.print(f"dry run: this job {would} be admitted now; nothing was submitted", markup=False)


def run(
    *,
    command: Annotated[
        list[str] | None,
        typer.Argument(
            help="The command, after '--' (overrides the task file's).", show_default=False
        ),
    ] = None,
    gpus: Annotated[
        int | None,
        typer.Option("--gpus", "--gpus-per-node", help="GPUs (on each node); 0: CPU only."),
    ] = None,
    nodes: Annotated[
        int | None,
        typer.Option(help="Nodes to run on at once (a gang); the command runs on each."),
    ] = None,
    gpu_type: Annotated[str | None, typer.Option(help="GPU model, e.g. H100.")] = None,
    cpus: Annotated[float | None, typer.Option(help="CPUs (on each node), e.g. 0.5.")] = None,
    memory: Annotated[str | None, typer.Option(help="Memory (on each node), e.g. 16G.")] = None,
    name: Annotated[str | None, typer.Option(help="A name for the job.")] = None,
    max_duration: Annotated[str | None, typer.Option(help="Time limit, e.g. 2h.")] = None,
    priority: Annotated[int | None, typer.Option(help="-100..100; higher runs first.")] = None,
    image: Annotated[str | None, typer.Option(help="Run in an image: gpucloud image list.")] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="NAME=VALUE; repeatable.")
    ] = None,
    volume: Annotated[list[str] | None, typer.Option(
        "--volume", help="NAME:/path[:ro], repeatable: gpucloud volume list.")] = None,
    dataset: Annotated[list[str] | None, typer.Option(
        "--dataset", help="name[:version] read-only, repeatable: gpucloud dataset list.")] = None,
    task_file: Annotated[
        Path | None, typer.Option("--file", "-f", help="A YAML task file; flags override it.")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the end; exit with its code.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Submit nothing: show the price, the balance and whether it could start now "
            "(exit 0 if so, 1 if not).",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Submit a job: gpucloud run --gpus 4 -- python train.py"""
    flags = {
        "nodes": nodes,
        "gpus": gpus,
        "gpu_type": gpu_type,
        "cpus": cpus,
        "memory": memory,
        "name": name,
        "max_duration": max_duration,
        "priority": priority,
        "image": image,
        "volumes": volume or None,
        "datasets": dataset or None,
    }
    spec = build_spec(task_file, flags, env or [], command or [])  # validated before sending
    if dry_run:
        if wait:
            raise InputError("--dry-run submits nothing, so there is nothing to --wait for")
        with client() as api:
            estimate = api.estimate(spec)
        if as_json:
            print_json(estimate)
        else:
            print_estimate(estimate)
        raise typer.Exit(0 if allowed_now(estimate) else 1)
    with client() as api:
        job = api.submit_job(spec)
    if not as_json:
        console.print(f"job {job.id} submitted: {job.state.value}", markup=False)
        console.print(f"  follow its output:  gpucloud logs -f {job.id}", markup=False)
        console.print(f"  see where it is:    gpucloud show {job.id}", markup=False)
    if wait:
        job = _wait(job, quiet=as_json)
        err_console.print(summary(job), markup=False)
    if as_json:
        print_json(job)
    if wait:
        raise typer.Exit(exit_code_of(job))


def ps(
    all_jobs: Annotated[bool, typer.Option("--all", "-a", help="Include ended jobs.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """List jobs: by default those not yet ended."""
    with client() as api:
        jobs = api.list_jobs(states=None if all_jobs else ACTIVE_STATES)
    if as_json:
        print_json(jobs)
        return
    hint = "no jobs" if all_jobs else "no active jobs (gpucloud ps --all shows ended ones)"
    render.print_jobs(jobs, hint)


def show(job_id: Annotated[str, typer.Argument(help="Job id.")], as_json: JsonFlag = False) -> None:
    """A job's state and why, its resources and placement, and its event timeline."""
    with client() as api:
        job = api.get_job(job_id)
        events = api.job_events(job_id)
    if as_json:
        print_json(
            {**job.model_dump(mode="json"), "events": [e.model_dump(mode="json") for e in events]}
        )
        return
    render.print_job(job, events)


def logs(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream until it ends.")] = False,
) -> None:
    """Write a job's output to stdout as it comes."""
    out = sys.stdout.buffer
    with client() as api:
        for chunk in api.job_logs(job_id, follow=follow):
            out.write(chunk)
            out.flush()


def cancel(
    job_id: Annotated[str, typer.Argument(help="Job id.")], as_json: JsonFlag = False
) -> None:
    """Cancel a job: a running one is stopped (SIGTERM, then SIGKILL after the grace period)."""
    with client() as api:
        job = api.cancel_job(job_id)
    if as_json:
        print_json(job)
    elif job.state in TERMINAL:
        console.print(f"job {job.id} {job.state.value}", markup=False)
    else:
        console.print(f"job {job.id}: cancel requested, stopping ({job.state.value})", markup=False)


def wait_cmd(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    timeout: Annotated[float | None, typer.Option(help="Give up after S seconds.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Wait until a job ends, then exit with its exit code (1 if it has none)."""
    with client() as api:
        job = api.wait_job(job_id, timeout=timeout)
    err_console.print(summary(job), markup=False)
    if as_json:
        print_json(job)
    raise typer.Exit(exit_code_of(job))


def register(app: typer.Typer) -> None:
    interspersed = {"allow_interspersed_args": False}  # flags after the command are its own
    app.command(context_settings=interspersed)(run)
    app.command()(ps)
    app.command()(show)
    app.command()(logs)
    app.command()(cancel)
    app.command("wait")(wait_cmd)
