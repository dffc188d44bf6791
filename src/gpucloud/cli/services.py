"""Service commands: create, list, show, update, delete, logs and key. Thin: parse, call the
SDK, render."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from gpucloud.cli.common import JsonFlag, client
from gpucloud.cli.errors import InputError
from gpucloud.cli.output import age, console, cpus, mib, print_json, timestamp
from gpucloud.cli.render import events_table
from gpucloud.core.errors import InvalidRequest
from gpucloud.core.services import ReplicaState, ServiceState, parse_service_spec
from gpucloud.schemas.services import ServiceOut, ServiceUpdate

service_app = typer.Typer(help="Inference services: autoscaled HTTP endpoints on the fleet.",
                          no_args_is_help=True)

STATE_STYLES = {
    ServiceState.STARTING: "cyan", ServiceState.RUNNING: "bold green",
    ServiceState.IDLE: "magenta", ServiceState.DELETING: "yellow", ServiceState.DELETED: "dim",
}
REPLICA_STYLES = {
    ReplicaState.STARTING: "cyan", ReplicaState.UNREADY: "yellow",
    ReplicaState.READY: "bold green", ReplicaState.DRAINING: "magenta",
    ReplicaState.STOPPING: "yellow", ReplicaState.STOPPED: "dim", ReplicaState.FAILED: "bold red",
}

Command = Annotated[list[str] | None, typer.Argument(
    help="The command serving HTTP on $PORT, after '--'.", show_default=False)]
Gpus = Annotated[int | None, typer.Option(help="GPUs of each replica; 0: CPU only.")]
GpuType = Annotated[str | None, typer.Option(help="GPU model, e.g. H100.")]
Image = Annotated[str | None, typer.Option(help="The replicas' image: gpucloud image list.")]
Cpus = Annotated[float | None, typer.Option("--cpus", help="CPUs of each replica.")]
Memory = Annotated[str | None, typer.Option(help="Memory of each replica, e.g. 16G.")]
MinReplicas = Annotated[int | None, typer.Option(
    help="Replicas kept without traffic; 0 (the default) scales to zero when idle.")]
MaxReplicas = Annotated[int | None, typer.Option(help="The autoscaler's ceiling.")]
TargetRps = Annotated[float | None, typer.Option(
    help="Scale on requests per second per replica.")]
TargetConcurrency = Annotated[float | None, typer.Option(
    help="Scale on requests in flight per replica.")]
Readiness = Annotated[str | None, typer.Option(
    help="Path that answers 2xx when a replica can serve (default /health).")]
ScaleToZero = Annotated[str | None, typer.Option(
    help="Idle time before every replica stops, e.g. 5m (with --min-replicas 0).")]
Stabilization = Annotated[str | None, typer.Option(
    help="A scale-down waits until the load stayed lower this long, e.g. 60s.")]
Env = Annotated[list[str] | None, typer.Option(
    "--env", "-e", help="KEY=VALUE in the replicas' environment, repeatable.")]


def _env(pairs: list[str] | None) -> dict[str, str] | None:
    if pairs is None:
        return None
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--env {pair!r}: write KEY=VALUE")
        env[key] = value
    return env


def _fields(**given: Any) -> dict[str, Any]:
    """The options given on the command line (left-out ones are not sent)."""
    return {k: v for k, v in given.items() if v is not None}


@service_app.command("create")
def service_create(
    name: Annotated[str, typer.Argument(help="Its name: the endpoint is /s/TENANT/NAME/.")],
    command: Command = None,
    gpus: Gpus = None,
    gpu_type: GpuType = None,
    image: Image = None,
    cpus_: Cpus = None,
    memory: Memory = None,
    min_replicas: MinReplicas = None,
    max_replicas: MaxReplicas = None,
    target_rps: TargetRps = None,
    target_concurrency: TargetConcurrency = None,
    readiness: Readiness = None,
    scale_to_zero: ScaleToZero = None,
    stabilization: Stabilization = None,
    env: Env = None,
    public: Annotated[bool, typer.Option(
        "--public", help="Also reachable with its own key (printed once).")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Create a service: gpucloud service create chat --gpus 1 --target-rps 5 -- python serve.py"""
    if not command:
        raise InputError("give the command after '--', e.g. -- python serve.py (it serves "
                         "HTTP on $PORT)")
    fields = _fields(command=command, gpus=gpus, gpu_type=gpu_type, image=image, cpus=cpus_,
                     memory=memory, min_replicas=min_replicas, max_replicas=max_replicas,
                     target_rps=target_rps, target_concurrency=target_concurrency,
                     readiness_path=readiness, scale_to_zero=scale_to_zero,
                     stabilization=stabilization, env=_env(env))
    if max_replicas is None and min_replicas is not None:
        fields["max_replicas"] = max(1, min_replicas)
    try:
        parse_service_spec(fields)  # validated before sending, by the server's rules
    except InvalidRequest as err:
        raise InputError(f"invalid service: {err}") from err
    with client() as api:
        service = api.create_service(name, fields, public=public)
        key = api.issue_service_key(service.id).key if public else None
        url = api.url.rstrip("/") + service.path
    if as_json:
        print_json({**service.model_dump(mode="json"), "url": url, "key": key})
        return
    console.print(f"service {service.name} created ({service.id}): {service.state.value}",
                  markup=False)
    console.print(f"  endpoint:  {url}", markup=False)
    console.print("  call it:   curl -H \"Authorization: Bearer $GPUCLOUD_TOKEN\" "
                  f"{url}...", markup=False)
    if key:
        console.print(f"  its key (shown once; callers send 'Authorization: Bearer KEY'): {key}",
                      markup=False)


@service_app.command("list")
def service_list(
    deleted: Annotated[bool, typer.Option("--deleted", help="Include deleted ones.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Your tenant's services."""
    with client() as api:
        services = api.list_services(deleted=deleted)
    if as_json:
        print_json(services)
        return
    if not services:
        console.print("no services; create one: gpucloud service create NAME --gpus 1 -- CMD",
                      style="dim")
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAME", "ID", "STATE", "READY", "GPUS", "VERSION", "PATH", "AGE"):
        table.add_column(column, no_wrap=True)
    now = datetime.now(UTC)
    for s in services:
        table.add_row(s.name, s.id, _state(s), f"{s.ready_replicas}/{s.desired_replicas}",
                      _gpus(s), f"v{s.generation}", s.path, age(s.created_at, now))
    console.print(table)


def _state(service: ServiceOut) -> Text:
    return Text(service.state.value, style=STATE_STYLES[service.state])


def _gpus(service: ServiceOut) -> str:
    spec = service.spec
    if not spec.gpus:
        return "0"
    return f"{spec.gpus}x{spec.gpu_type}" if spec.gpu_type else str(spec.gpus)


def _line(label: str, value: str | Text) -> Text:
    return Text(f"{label:<11}", style="bold") + (value if isinstance(value, Text)
                                                 else Text(value))


@service_app.command("show")
def service_show(name: Annotated[str, typer.Argument(help="Its name or id.")],
                 as_json: JsonFlag = False) -> None:
    """Its replicas and why they are where they are, how it scales, what a replica costs."""
    with client() as api:
        s = api.get_service(name)
        url = api.url.rstrip("/") + s.path
    if as_json:
        print_json(s)
        return
    spec = s.spec
    console.print(_line("service", f"{s.name}  ({s.id})"))
    console.print(_line("state", _state(s) + Text(f"  {s.message}", style="dim")))
    console.print(_line("endpoint", url + ("  (public: its key works too)" if s.public else "")))
    console.print(_line("command", " ".join(spec.command)))
    console.print(_line("replica", f"{_gpus(s)} GPU, {cpus(spec.cpus)} CPU, "
                                   f"{mib(spec.memory_mib)} memory; "
                                   f"{s.price_per_replica_hour_minor / 100:.2f} {s.currency}/h"))
    target = (f"{spec.target_rps:g} req/s per replica" if spec.target_rps else
              f"{spec.target_concurrency:g} in flight per replica" if spec.target_concurrency
              else "fixed size")
    console.print(_line("scaling", f"{spec.min_replicas}..{spec.max_replicas} replicas on "
                                   f"{target}; down after {spec.stabilization_s} s lower, to "
                                   f"zero after {spec.scale_to_zero_s} s idle"))
    console.print(_line("replicas", f"{s.ready_replicas} ready of {s.desired_replicas} "
                                    f"wanted, version v{s.generation}"))
    if s.replicas:
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("#", "STATE", "VERSION", "ADDRESS", "IN FLIGHT", "JOB", "MESSAGE"):
            table.add_column(column, no_wrap=column != "MESSAGE")
        for r in s.replicas:
            table.add_row(str(r.ordinal), Text(r.state.value, style=REPLICA_STYLES[r.state]),
                          f"v{r.generation}", f"{r.host}:{r.port}" if r.host else "-",
                          str(r.in_flight), r.job_id, r.message)
        console.print(table)
    console.print(_line("created", timestamp(s.created_at)))
    if s.events:
        console.print()
        console.print(Text("events", style="bold"))
        console.print(events_table(s.events))


@service_app.command("update")
def service_update(
    name: Annotated[str, typer.Argument(help="Its name or id.")],
    command: Command = None,
    gpus: Gpus = None,
    gpu_type: GpuType = None,
    image: Image = None,
    cpus_: Cpus = None,
    memory: Memory = None,
    min_replicas: MinReplicas = None,
    max_replicas: MaxReplicas = None,
    target_rps: TargetRps = None,
    target_concurrency: TargetConcurrency = None,
    readiness: Readiness = None,
    scale_to_zero: ScaleToZero = None,
    stabilization: Stabilization = None,
    env: Env = None,
    as_json: JsonFlag = False,
) -> None:
    """Change it. A new command, compute, image or environment rolls out replica by replica
    (no request fails); scaling options apply at once."""
    fields = _fields(command=command or None, gpus=gpus, gpu_type=gpu_type, image=image,
                     cpus=cpus_, memory=memory, min_replicas=min_replicas,
                     max_replicas=max_replicas, target_rps=target_rps,
                     target_concurrency=target_concurrency, readiness_path=readiness,
                     scale_to_zero=scale_to_zero, stabilization=stabilization, env=_env(env))
    if target_rps is not None:
        fields["target_concurrency"] = None  # one target at a time
    if target_concurrency is not None:
        fields["target_rps"] = None
    if not fields:
        raise InputError("nothing to change: give an option, or a new command after '--'")
    try:
        ServiceUpdate.model_validate(fields)
    except ValueError as err:
        raise InputError(f"invalid change: {err}") from err
    with client() as api:
        service = api.update_service(name, **fields)
    if as_json:
        print_json(service)
        return
    console.print(f"service {service.name} updated: version v{service.generation}, "
                  f"{service.ready_replicas}/{service.desired_replicas} ready", markup=False)


@service_app.command("delete")
def service_delete(name: Annotated[str, typer.Argument(help="Its name or id.")],
                   as_json: JsonFlag = False) -> None:
    """Delete it: its replicas are drained and stopped, billing stops."""
    with client() as api:
        service = api.delete_service(name)
    if as_json:
        print_json(service)
        return
    console.print(f"service {service.name}: deleting ({service.state.value})", markup=False)


@service_app.command("logs")
def service_logs(
    name: Annotated[str, typer.Argument(help="Its name or id.")],
    replica: Annotated[int | None, typer.Option(
        help="The replica's number (# in 'service show'); default the newest.")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream until it ends.")
                      ] = False,
) -> None:
    """Write a replica's output to stdout as it comes."""
    out = sys.stdout.buffer
    with client() as api:
        for chunk in api.service_logs(name, replica=replica, follow=follow):
            out.write(chunk)
            out.flush()


@service_app.command("key")
def service_key(
    name: Annotated[str, typer.Argument(help="Its name or id.")],
    revoke: Annotated[bool, typer.Option("--revoke", help="Private again: the key stops "
                                                          "working.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Make it public with a new key (printed once; the previous key stops working)."""
    with client() as api:
        if revoke:
            service = api.revoke_service_key(name)
            if as_json:
                print_json(service)
            else:
                console.print(f"service {service.name}: private, its key is revoked",
                              markup=False)
            return
        key = api.issue_service_key(name)
    if as_json:
        print_json(key)
        return
    console.print(key.key, markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(service_app, name="service")
