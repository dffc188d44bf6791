"""Fleet commands: nodes and their devices; quarantine. Registers the asset register's
(``fleet_assets``) and bare metal's (``baremetal``) command groups too."""

from __future__ import annotations

from typing import Annotated

import typer

from gpucloud.cli import render
from gpucloud.cli.baremetal import baremetal_app
from gpucloud.cli.common import JsonFlag, client
from gpucloud.cli.fleet_assets import fleet_app
from gpucloud.cli.output import console, print_json


def nodes(as_json: JsonFlag = False) -> None:
    """Nodes and every GPU: model, memory, health and which job holds it."""
    with client() as api:
        fleet = api.list_nodes()
    if as_json:
        print_json(fleet)
        return
    render.print_nodes(fleet)


node_app = typer.Typer(help="One node: quarantine it, return it to service (operators).",
                       no_args_is_help=True)


@node_app.command("show")
def show(node_id: Annotated[str, typer.Argument(help="The node id.")],
         as_json: JsonFlag = False) -> None:
    """One node and its GPUs."""
    with client() as api:
        node = api.get_node(node_id)
    if as_json:
        print_json(node)
        return
    render.print_nodes([node])


@node_app.command("quarantine")
def quarantine(
    node_id: Annotated[str, typer.Argument(help="The node id.")],
    reason: Annotated[str, typer.Option(help="Why: shown to operators and given to the engine.")],
    as_json: JsonFlag = False,
) -> None:
    """Take a node out of service: running jobs go on, nothing new is placed there, and the
    engine stops using it (Slurm drains it)."""
    with client() as api:
        node = api.quarantine_node(node_id, reason)
    if as_json:
        print_json(node)
        return
    console.print(f"node {node.id} quarantined: {node.quarantine_reason}", markup=False)
    console.print(f"  return it with: gpucloud node return {node.id}", markup=False)


@node_app.command("return")
def return_(
    node_id: Annotated[str, typer.Argument(help="The node id.")],
    gpu: Annotated[
        int | None, typer.Option(help="Return only this GPU (quarantined or retired).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Put a quarantined node, or one GPU, back into service."""
    with client() as api:
        node = api.return_node(node_id, gpu)
    if as_json:
        print_json(node)
        return
    what = f"node {node.id}" if gpu is None else f"GPU {gpu} of node {node.id}"
    console.print(f"{what} is in service", markup=False)


def register(app: typer.Typer) -> None:
    app.command()(nodes)
    app.add_typer(node_app, name="node")
    app.add_typer(fleet_app, name="fleet")
    app.add_typer(baremetal_app, name="baremetal")
