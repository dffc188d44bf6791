"""Fleet commands: nodes and their devices."""

from __future__ import annotations

import typer

from gpucloud.cli import render
from gpucloud.cli.common import JsonFlag, client
from gpucloud.cli.output import print_json


def nodes(as_json: JsonFlag = False) -> None:
    """Nodes and every GPU: model, memory, health and which job holds it."""
    with client() as api:
        fleet = api.list_nodes()
    if as_json:
        print_json(fleet)
        return
    render.print_nodes(fleet)


def register(app: typer.Typer) -> None:
    app.command()(nodes)
