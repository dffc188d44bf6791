"""The ``gpucloud`` console script; also ``python -m gpucloud.cli.main``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer

import gpucloud
from gpucloud.cli import (
    accounts,
    admin,
    billing,
    fleet,
    health,
    images,
    instances,
    jobs,
    leader,
    limits,
    services,
    sim,
    sim_ettr,
    storage,
    up,
)
from gpucloud.cli.errors import guarded

app = typer.Typer(
    name="gpucloud",
    help="A self-service GPU cloud on your own machines. Start with 'gpucloud up'.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gpucloud {gpucloud.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """A self-service GPU cloud on your own machines. Start with 'gpucloud up'."""


up.register(app)
accounts.register(app)
jobs.register(app)
fleet.register(app)
billing.register(app)
limits.register(app)
storage.register(app)
services.register(app)
images.register(app)
instances.register(app)
admin.register(app)
health.register(app, admin.admin_app)
leader.register(admin.admin_app)
sim_ettr.register(sim.sim_app)
sim.register(app)


def run(argv: Sequence[str] | None = None) -> int:
    """Run one command line and return its exit code (errors already reported)."""
    command = typer.main.get_command(app)

    def invoke() -> int:
        result = command.main(args=argv, prog_name="gpucloud", standalone_mode=False)
        return result if isinstance(result, int) else 0

    return guarded(invoke)


def main(argv: Sequence[str] | None = None) -> None:
    raise SystemExit(run(argv))


if __name__ == "__main__":
    main()
