"""Health commands: fault drills (``debug inject-fault``), the fault feed, the Xid policy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.table import Table

from gpucloud.cli.common import JsonFlag, client
from gpucloud.cli.errors import InputError
from gpucloud.cli.output import age, console, print_json
from gpucloud.schemas import XidPolicyOut

debug_app = typer.Typer(help="Drills for operators: faults on simulated GPUs.",
                        no_args_is_help=True)
xid_app = typer.Typer(help="Which Xid codes are the job's fault, reset a GPU, or drain a node.",
                      no_args_is_help=True)


@debug_app.command("inject-fault")
def inject_fault(
    node: Annotated[str, typer.Argument(help="A node with simulated GPUs.")],
    gpu: Annotated[int | None, typer.Option(help="The GPU index (Xid and ECC faults).")] = None,
    xid: Annotated[int | None, typer.Option(help="Inject this Xid code, e.g. 79.")] = None,
    ecc: Annotated[bool, typer.Option("--ecc", help="Inject an uncorrectable ECC error.")] = False,
    heartbeat_loss: Annotated[
        bool, typer.Option("--heartbeat-loss", help="Silence the node's reports.")
    ] = False,
    duration: Annotated[
        float, typer.Option(help="Seconds a heartbeat loss lasts.", min=0.1)
    ] = 20.0,
) -> None:
    """Inject a fault into a simulated node: it travels the same path as a real one."""
    chosen = [kind for kind, given in (("xid", xid is not None), ("ecc", ecc),
                                       ("heartbeat-loss", heartbeat_loss)) if given]
    if len(chosen) != 1:
        raise InputError("choose one of --xid N, --ecc or --heartbeat-loss")
    with client() as api:
        api.inject_fault(node, chosen[0], gpu, xid, duration)
    where = node if gpu is None else f"{node} GPU {gpu}"
    what = f"Xid {xid}" if xid is not None else chosen[0]
    console.print(f"injected {what} on {where}; watch: gpucloud faults --node {node}",
                  markup=False)


def faults(
    node: Annotated[str | None, typer.Option(help="Only this node's.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.", min=1)] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Health signals and what the platform did about each (operators)."""
    with client() as api:
        found = api.list_faults(node, limit)
    if as_json:
        print_json(found)
        return
    if not found:
        console.print("no faults", style="dim")
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("AGE", "NODE", "GPU", "SIGNAL", "ACTION", "WHAT", "JOBS"):
        table.add_column(column, no_wrap=column != "WHAT")
    for fault in found:
        signal = fault.kind + (f" {fault.code}" if fault.code is not None else "")
        action = fault.action + (" (ALERT)" if fault.alert else "")
        table.add_row(age(fault.at), fault.node_id,
                      "-" if fault.device_index is None else str(fault.device_index),
                      signal, action, fault.description, ", ".join(fault.job_ids) or "-")
    console.print(table)


def _print_policy(out: XidPolicyOut, as_json: bool) -> None:
    if as_json:
        print_json(out)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("XID", "ACTION", "MEANING"):
        table.add_column(column, no_wrap=column != "MEANING")
    for code, entry in sorted(out.policy.items()):
        table.add_row(str(code), entry["action"], entry["meaning"])
    console.print(table)
    console.print("the default policy" if out.default else "changed by an operator",
                  style="dim")
    console.print("codes not listed drain their node and raise an alert", style="dim")


@xid_app.command("show")
def show(as_json: JsonFlag = False) -> None:
    """The Xid policy in force."""
    with client() as api:
        _print_policy(api.xid_policy(), as_json)


@xid_app.command("set")
def set_policy(
    file: Annotated[Path, typer.Argument(help="YAML or JSON: 'CODE: action' or "
                                              "'CODE: {action: ..., meaning: ...}'.")],
    as_json: JsonFlag = False,
) -> None:
    """Replace the Xid policy with a file's (actions: application, reset-gpu, drain-node,
    observe). Tip: start from 'gpucloud admin xid-policy show --json'."""
    try:
        data = yaml.safe_load(file.read_text())
    except OSError as err:
        raise InputError(f"cannot read {file}: {err.strerror or err}") from err
    except yaml.YAMLError as err:
        raise InputError(f"{file}: cannot parse YAML: {err}") from err
    if isinstance(data, dict) and isinstance(data.get("policy"), dict):
        data = data["policy"]  # the shape 'show --json' prints
    if not isinstance(data, dict) or not data:
        raise InputError(f"{file}: expected a mapping of Xid code to action, e.g. "
                         "'79: drain-node'")
    with client() as api:
        _print_policy(api.set_xid_policy(data), as_json)


@xid_app.command("reset")
def reset(as_json: JsonFlag = False) -> None:
    """Back to the default policy (NVIDIA's Xid catalogue)."""
    with client() as api:
        _print_policy(api.reset_xid_policy(), as_json)


def register(app: typer.Typer, admin_app: typer.Typer) -> None:
    app.add_typer(debug_app, name="debug")
    app.command()(faults)
    admin_app.add_typer(xid_app, name="xid-policy")
