"""Instance commands: create, list, show, stop, start, delete, shell and jupyter. Thin: parse,
call the SDK, render; ``shell`` relays the local terminal to the instance's pty."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from gpucloud.cli.common import JsonFlag, client
from gpucloud.cli.errors import CliError, InputError
from gpucloud.cli.output import age, console, cpus, err_console, mib, print_json, timestamp
from gpucloud.cli.render import events_table
from gpucloud.core.errors import InvalidRequest
from gpucloud.core.instances import InstanceState, parse_instance_spec
from gpucloud.schemas.instances import InstanceOut

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

instance_app = typer.Typer(help="Interactive GPU instances: a shell or Jupyter, stop/start.",
                           no_args_is_help=True)

STATE_STYLES = {
    InstanceState.PENDING: "dim", InstanceState.STARTING: "cyan",
    InstanceState.RUNNING: "bold green", InstanceState.STOPPING: "yellow",
    InstanceState.STOPPED: "magenta", InstanceState.FAILED: "bold red",
    InstanceState.DELETED: "dim",
}
EOT = b"\x04"  # Ctrl-D: end of input, sent once piped input has ended
EOT_EVERY_S = 0.5


def _state(instance: InstanceOut) -> Text:
    mode = " (no GPU)" if instance.no_gpu and instance.gpus else ""
    return Text(instance.state.value + mode, style=STATE_STYLES[instance.state])


def _gpus(instance: InstanceOut) -> str:
    if not instance.gpus:
        return "0"
    return f"{instance.gpus}x{instance.gpu_type}" if instance.gpu_type else str(instance.gpus)


def _price(instance: InstanceOut) -> str:
    return f"{instance.price_per_hour_minor / 100:.2f} {instance.currency}/h"


@instance_app.command("create")
def instance_create(
    gpus: Annotated[int, typer.Option(help="GPUs while it runs (start --no-gpu: none).")],
    name: Annotated[str | None, typer.Option(help="A name (default: generated).")] = None,
    gpu_type: Annotated[str | None, typer.Option(help="GPU model, e.g. H100.")] = None,
    image: Annotated[str | None, typer.Option(help="Its environment: gpucloud image list.")
                     ] = None,
    volume: Annotated[list[str] | None, typer.Option(
        "--volume", "-v", help="NAME:/path, repeatable: a volume attached to every run.")
    ] = None,
    jupyter: Annotated[bool, typer.Option("--jupyter", help="Run a Jupyter server in it.")
                       ] = False,
    disk: Annotated[str | None, typer.Option(help="Its disk (home), e.g. 100G.")] = None,
    cpus_: Annotated[float | None, typer.Option("--cpus", help="CPUs, e.g. 4.")] = None,
    memory: Annotated[str | None, typer.Option(help="Memory, e.g. 32G.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an instance and start it: gpucloud instance create --gpus 1 --image pytorch"""
    fields: dict[str, Any] = {"gpus": gpus, "name": name, "gpu_type": gpu_type,
                              "image": image, "volumes": volume or [], "jupyter": jupyter}
    extra = {"disk": disk, "cpus": cpus_, "memory": memory}
    fields |= {k: v for k, v in extra.items() if v is not None}
    try:
        spec = parse_instance_spec(fields)  # validated before sending, by the server's rules
    except InvalidRequest as err:
        raise InputError(f"invalid instance: {err}") from err
    with client() as api:
        instance = api.create_instance(spec)
    if as_json:
        print_json(instance)
        return
    console.print(f"instance {instance.name} created ({instance.id}): {instance.state.value}",
                  markup=False)
    console.print(f"  open a shell:  gpucloud instance shell {instance.name}", markup=False)
    console.print(f"  stop it:       gpucloud instance stop {instance.name}  (the disk is "
                  "kept)", markup=False)


@instance_app.command("list")
def instance_list(
    deleted: Annotated[bool, typer.Option("--deleted", help="Include deleted ones.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Your tenant's instances."""
    with client() as api:
        instances = api.list_instances(deleted=deleted)
    if as_json:
        print_json(instances)
        return
    if not instances:
        console.print("no instances; create one: gpucloud instance create --gpus 1",
                      style="dim")
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAME", "ID", "STATE", "GPUS", "IMAGE", "NODE", "PRICE", "AGE"):
        table.add_column(column, no_wrap=True)
    now = datetime.now(UTC)
    for i in instances:
        table.add_row(i.name, i.id, _state(i), _gpus(i), i.image or "-", i.node_id or "-",
                      _price(i), age(i.created_at, now))
    console.print(table)


def _line(label: str, value: str | Text) -> Text:
    return Text(f"{label:<11}", style="bold") + (value if isinstance(value, Text)
                                                 else Text(value))


@instance_app.command("show")
def instance_show(
    name: Annotated[str, typer.Argument(help="Its name or id.")], as_json: JsonFlag = False
) -> None:
    """Where an instance is and why, what it costs now, what idle reclamation saved."""
    with client() as api:
        i = api.get_instance(name)
    if as_json:
        print_json(i)
        return
    console.print(_line("instance", f"{i.name}  ({i.id})"))
    console.print(_line("state", _state(i) + Text(f"  {i.reason}", style="dim")))
    if i.message:
        console.print(_line("message", i.message))
    console.print(_line("resources", f"{_gpus(i)} GPU, {cpus(i.cpus)} CPU, "
                                     f"{mib(i.memory_mib)} memory, {i.disk_gib}G disk"))
    console.print(_line("image", i.image or "- (the node's own Python)"))
    if i.volumes:
        console.print(_line("volumes", " ".join(i.volumes)))
    console.print(_line("placement", f"{i.node_id} {','.join(i.devices)}" if i.node_id
                        else "-"))
    console.print(_line("price", _price(i) + (" (its disk, while stopped)"
                                              if i.state is InstanceState.STOPPED else "")))
    if i.jupyter_path:
        console.print(_line("jupyter", f"gpucloud instance jupyter {i.name}"))
    if i.disk_used_bytes is not None:
        console.print(_line("disk used", f"{i.disk_used_bytes} bytes"))
    if i.saved_seconds:
        console.print(_line("saved", f"{i.saved_minor / 100:.2f} {i.currency} by idle "
                                     f"reclamation over {i.saved_seconds} s"))
    console.print(_line("runs", str(i.runs)))
    console.print(_line("created", timestamp(i.created_at)))
    console.print(_line("started", timestamp(i.started_at)))
    console.print(_line("stopped", timestamp(i.stopped_at)))
    if i.events:
        console.print()
        console.print(Text("events", style="bold"))
        console.print(events_table(i.events))


def _act(verb: str, instance: InstanceOut, as_json: bool) -> None:
    if as_json:
        print_json(instance)
        return
    console.print(f"instance {instance.name}: {verb} ({instance.state.value})", markup=False)


@instance_app.command("stop")
def instance_stop(name: Annotated[str, typer.Argument(help="Its name or id.")],
                  as_json: JsonFlag = False) -> None:
    """Stop it: its GPUs are released at once, its disk is kept (billed as storage)."""
    with client() as api:
        _act("stopping", api.stop_instance(name), as_json)


@instance_app.command("start")
def instance_start(
    name: Annotated[str, typer.Argument(help="Its name or id.")],
    no_gpu: Annotated[bool, typer.Option("--no-gpu", help="Without GPUs, at the CPU price "
                                                          "(edit files, copy data).")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Start a stopped instance again, with its disk as it was."""
    with client() as api:
        _act("starting" + (" without GPUs" if no_gpu else ""),
             api.start_instance(name, no_gpu=no_gpu), as_json)


@instance_app.command("delete")
def instance_delete(name: Annotated[str, typer.Argument(help="Its name or id.")],
                    as_json: JsonFlag = False) -> None:
    """Delete it and its disk (stopped first if running; volumes are kept)."""
    with client() as api:
        _act("deleting", api.delete_instance(name), as_json)


@instance_app.command("idle-policy")
def instance_idle_policy(
    idle: Annotated[str | None, typer.Option(help="Set: idle this long (e.g. 30m) warns.")
                    ] = None,
    below: Annotated[int, typer.Option(help="GPU utilisation under this % counts as idle.")
                     ] = 5,
    grace: Annotated[str, typer.Option(help="From the warning to the action.")] = "5m",
    action: Annotated[str, typer.Option(help="no-gpu (restart without GPUs) or stop.")
                      ] = "no-gpu",
    clear: Annotated[bool, typer.Option("--clear", help="Remove the policy.")] = False,
    tenant: Annotated[str | None, typer.Option(help="Operators: another tenant's.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Show your tenant's idle reclamation policy; --idle sets it (tenant admins)."""
    with client() as api:
        if clear:
            api.clear_idle_policy(tenant)
            console.print("idle policy removed: idle instances keep their GPUs", markup=False)
            return
        policy = (api.set_idle_policy(below_pct=below, idle=idle, grace=grace, action=action,
                                      tenant=tenant)
                  if idle is not None else api.get_idle_policy(tenant))
    if as_json:
        print_json(policy)
        return
    what = ("restarted without GPUs (CPU price)" if policy.action.value == "no-gpu"
            else "stopped")
    console.print(f"GPU instances below {policy.below_pct}% utilisation for {policy.idle_s} s "
                  f"get a warning, then {policy.grace_s} s later are {what}; the disk is kept "
                  f"(set by {policy.updated_by} at {timestamp(policy.updated_at)})",
                  markup=False)


@instance_app.command("jupyter")
def instance_jupyter(name: Annotated[str, typer.Argument(help="Its name or id.")]) -> None:
    """Print the URL of its Jupyter server, reached through the control plane."""
    with client() as api:
        i = api.get_instance(name)
        base = api.url.rstrip("/")
    if not i.jupyter_path:
        raise CliError(f"instance {i.name} has no Jupyter server (create it with --jupyter)")
    console.print(f"{base}{i.jupyter_path}", markup=False)
    if i.state is not InstanceState.RUNNING:
        err_console.print(f"instance {i.name} is {i.state.value}: the URL answers once it "
                          "runs", markup=False)
    err_console.print("open it in a browser signed in to the console, or send "
                      "'Authorization: Bearer TOKEN'", markup=False)


@instance_app.command("shell")
def instance_shell(name: Annotated[str, typer.Argument(help="Its name or id.")]) -> None:
    """A shell inside the running instance. Interactive on a terminal; with piped input
    (echo 'nvidia-smi; exit' | gpucloud instance shell N) it runs that and exits with the
    shell's code."""
    from websockets.exceptions import InvalidStatus, WebSocketException

    size = shutil.get_terminal_size() if sys.stdin.isatty() else os.terminal_size((80, 24))
    with client() as api:
        try:
            ws = api.open_shell(name, rows=size.lines, cols=size.columns)
        except InvalidStatus as err:
            raise CliError(f"instance {name}: {_denial(err)}") from err
        except (OSError, WebSocketException) as err:
            raise CliError(f"cannot reach the shell of {name}: {err}") from err
    with ws:
        code = relay(ws)
    raise typer.Exit(code)


def _denial(err: Any) -> str:
    """The server's problem+json sentence from a refused handshake."""
    response = err.response
    try:
        detail = json.loads(response.body or b"{}").get("detail")
    except ValueError:
        detail = None
    return str(detail or f"HTTP {response.status_code}")


def relay(ws: ClientConnection) -> int:
    """Local terminal <-> the websocket until the server reports the shell's exit code."""
    result: dict[str, int] = {}
    stdin = sys.stdin.fileno()
    done = threading.Event()

    def from_server() -> None:
        try:
            for message in ws:
                if isinstance(message, bytes):
                    sys.stdout.buffer.write(message)
                    sys.stdout.buffer.flush()
                    continue
                control = json.loads(message)
                if "exit" in control:
                    result["code"] = int(control["exit"])
                elif "error" in control:
                    err_console.print(f"\r\n{control['error']}", markup=False)
                    result["code"] = 1
        except Exception as err:  # the connection dropped: say so, exit 1
            err_console.print(f"\r\nconnection lost: {err}", markup=False)
        finally:
            done.set()

    def to_server() -> None:
        with contextlib.suppress(Exception):  # the connection closed under us: done
            while not done.is_set():
                data = os.read(stdin, 4096)
                if not data:
                    break
                ws.send(data)
            # Piped input ended: Ctrl-D, as a terminal's user would type, until the shell
            # exits. Repeated: one typed while a command runs ends that command's input, and
            # one that arrives while bash resets the terminal can be dropped.
            while not done.wait(EOT_EVERY_S):
                ws.send(EOT)

    with _raw_terminal(stdin, ws):
        threading.Thread(target=from_server, daemon=True).start()
        threading.Thread(target=to_server, daemon=True).start()
        done.wait()
    return result.get("code", 1)


@contextlib.contextmanager
def _raw_terminal(fd: int, ws: ClientConnection) -> Iterator[None]:
    """On a terminal: raw mode (keys go to the remote shell as typed, Ctrl-C included) and
    window-size changes forwarded; restored however the session ends."""
    if not os.isatty(fd):
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)

    def resized(signum: int, frame: object) -> None:
        size = shutil.get_terminal_size()
        with contextlib.suppress(Exception):
            ws.send(json.dumps({"resize": [size.lines, size.columns]}))

    previous = signal.signal(signal.SIGWINCH, resized)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, previous)


def register(app: typer.Typer) -> None:
    app.add_typer(instance_app, name="instance")
