"""``gpucloud up``: run the control plane in the foreground and say how to use it."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from gpucloud.cli.errors import CliError, InputError
from gpucloud.cli.output import console
from gpucloud.core.errors import InvalidRequest
from gpucloud.core.quantities import parse_simulated_gpus
from gpucloud.settings import DEFAULT_PORT, Settings, default_data_dir
from gpucloud.store.pg_checks import server_settings, warnings_for

if TYPE_CHECKING:
    from gpucloud.server import ControlPlane

log = logging.getLogger("gpucloud")


def check_port_free(host: str, port: int) -> None:
    """Fail in one line before building anything, rather than deep inside the server."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as err:
        raise InputError(f"--host {host!r}: {err.strerror}") from err
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise CliError(f"port {port} is in use: pass --port") from err
            raise CliError(f"cannot listen on {host}:{port}: {err.strerror or err}") from err


def database_label(settings: Settings) -> str:
    """The database URL without its password, or the SQLite file."""
    if settings.database_url is None:
        return str(settings.data_dir / "gpucloud.db")
    from sqlalchemy.engine import make_url

    try:
        return make_url(settings.database_url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL fails at build(); here, just do not print secrets
        return "(configured URL)"


def _path_hint() -> list[str]:
    """The shell may not find 'gpucloud' when it lives in a virtual environment: say how."""
    import os
    import shutil
    import sys
    from pathlib import Path

    scripts = Path(sys.executable).parent
    found = shutil.which("gpucloud")
    if found is not None and Path(found).parent == scripts:
        return []
    return [f"  export PATH={scripts}{os.pathsep}$PATH"]


def banner(settings: Settings, engine_note: str, new_token: bool) -> str:
    token_file = settings.token_file
    token_note = " (new)" if new_token else ""
    if not token_file.exists():
        token_note = " (missing: it is written on the very first start only)"
    url = settings.url
    return "\n".join(
        [
            f"gpucloud is up at {url}",
            f"  engine   {settings.engine}: {engine_note}",
            f"  database {database_label(settings)}",
            f"  admin token in {token_file} (mode 0600){token_note}",
            f"  console  {url}/ (sign in with that token)",
            "Next, in another shell:",
            f"  export GPUCLOUD_URL={url}",
            f"  export GPUCLOUD_TOKEN=$(cat {token_file})",
            *_path_hint(),
            "  gpucloud nodes",
            "  gpucloud run --gpus 4 -- sh -c 'echo $CUDA_VISIBLE_DEVICES; sleep 30'",
            "Press Ctrl-C to stop "
            "(running jobs keep running and are re-adopted on the next start).",
        ]
    )


def up(
    *,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where state lives (default: the user data dir).")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = DEFAULT_PORT,
    simulate_gpus: Annotated[
        str | None, typer.Option(help="Simulate GPUs, e.g. 8xH100 or 8xH100,4xA100-80G.")
    ] = None,
    engine: Annotated[str, typer.Option(help="Execution engine.")] = "local",
    database_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL (default: SQLite in the data dir).")
    ] = None,
    stop_grace_s: Annotated[
        float, typer.Option(help="Seconds between SIGTERM and SIGKILL when stopping a job.")
    ] = 10.0,
    auth_max_failures: Annotated[
        int, typer.Option(help="Failed token checks a client address may make per minute "
                          "before it gets 429 (0: no limit; see docs/security.md).")
    ] = 20,
    workers: Annotated[
        int, typer.Option(help="API processes on the port (each takes a core; the "
                          "controllers run in one of them: docs/operations.md).")
    ] = 1,
    auth_cache_s: Annotated[
        float, typer.Option(help="Seconds a checked token's caller is remembered (0: check "
                            "every request); a revocation on another replica waits this long.")
    ] = 5.0,
    slurm_conf: Annotated[
        Path | None,
        typer.Option(help="--engine slurm: the slurm.conf (default: $SLURM_CONF).",
                     rich_help_panel="Slurm"),
    ] = None,
    slurm_api: Annotated[
        str | None,
        typer.Option(help="--engine slurm: 'cli' (sbatch, squeue...) or 'rest' (slurmrestd); "
                          "default: the CLI where it is installed, else rest.",
                     rich_help_panel="Slurm"),
    ] = None,
    slurm_rest_url: Annotated[
        str | None,
        typer.Option(envvar="SLURMRESTD_URL", help="slurmrestd's URL (its JWT: set "
                     "SLURMRESTD_TOKEN).", rich_help_panel="Slurm"),
    ] = None,
    slurm_rest_user: Annotated[
        str | None,
        typer.Option(help="The user slurmrestd's token belongs to (default: yours).",
                     rich_help_panel="Slurm"),
    ] = None,
    slurm_partition: Annotated[
        str | None,
        typer.Option(help="Use only this partition's nodes (default: all).",
                     rich_help_panel="Slurm"),
    ] = None,
    slurm_gpu_model: Annotated[
        str | None,
        typer.Option(help="The GPU model of untyped GRES (gpu:8), e.g. H100.",
                     rich_help_panel="Slurm"),
    ] = None,
    slurm_shared_dir: Annotated[
        Path | None,
        typer.Option(help="Run files and checkpoints, on a file system every Slurm node sees "
                          "(default: DATA_DIR/slurm).", rich_help_panel="Slurm"),
    ] = None,
) -> None:
    """Run the control plane (API, scheduler, engine) in the foreground."""
    from gpucloud import server

    if simulate_gpus is not None:
        try:
            parse_simulated_gpus(simulate_gpus)
        except InvalidRequest as err:
            message = str(err)
            if not message.startswith("--simulate-gpus"):
                message = f"--simulate-gpus {simulate_gpus!r}: {message}"
            raise InputError(message) from err
    if simulate_gpus is not None and engine != "local":
        raise InputError(f"--simulate-gpus is for the local engine; --engine {engine} reports "
                         "its own nodes")
    if stop_grace_s < 0:
        raise InputError(f"--stop-grace-s must be zero or more, got {stop_grace_s:g}")
    if auth_max_failures < 0:
        raise InputError(f"--auth-max-failures must be zero or more, got {auth_max_failures}")
    if not 1 <= workers <= 64:
        raise InputError(f"--workers must be between 1 and 64, got {workers}")
    if not 0 <= auth_cache_s <= 60:
        raise InputError(f"--auth-cache-s must be between 0 and 60, got {auth_cache_s:g}")
    check_port_free(host, port)
    settings = Settings(
        data_dir=(data_dir or default_data_dir()).expanduser().resolve(),
        host=host,
        port=port,
        engine=engine,
        simulate_gpus=simulate_gpus,
        database_url=database_url,
        stop_grace_s=stop_grace_s,
        auth_max_failures=auth_max_failures,
        auth_cache_s=auth_cache_s,
        workers=workers,
        slurm_conf=slurm_conf.expanduser().resolve() if slurm_conf else None,
        slurm_api=slurm_api,
        slurm_rest_url=slurm_rest_url,
        # A token is a secret: from the environment only, never a flag others can see in ps.
        slurm_rest_token=os.environ.get("SLURMRESTD_TOKEN") or None,
        slurm_rest_user=slurm_rest_user,
        slurm_partition=slurm_partition,
        slurm_gpu_model=slurm_gpu_model,
        slurm_shared_dir=slurm_shared_dir.expanduser().resolve() if slurm_shared_dir else None,
    )
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with sigterm_stops():
        plane = _build(settings)
        # Once, here: the API workers build planes of their own on the same database.
        for warning in warnings_for(server_settings(plane.platform.ctx.db)):
            log.warning("%s", warning)
        text = banner(settings, plane.engine_note, plane.new_admin_token is not None)
        server.serve(plane, on_ready=lambda: console.print(text, markup=False))
    console.print("gpucloud stopped", markup=False)


def _build(settings: Settings) -> ControlPlane:
    """server.build, with the failures an operator can fix said in one line."""
    from sqlalchemy.exc import SQLAlchemyError

    from gpucloud import server
    from gpucloud.core.errors import EngineError

    try:
        return server.build(settings)
    except EngineError as err:
        raise CliError(f"--engine {settings.engine}: {err}") from err
    except SQLAlchemyError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CliError(f"cannot open the database {database_label(settings)}: {first}") from err
    except OSError as err:
        raise CliError(f"cannot start in {settings.data_dir}: {err}") from err


class _Terminated(BaseException):  # like KeyboardInterrupt: not caught by "except Exception"
    """SIGTERM arrived: unwind normally so the controllers stop and the database closes."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


@contextlib.contextmanager
def sigterm_stops() -> Iterator[None]:
    """Make SIGTERM a clean stop like Ctrl-C. While serving, uvicorn takes the signal, shuts
    down gracefully and then re-raises it; the default action would kill the process before
    ``server.serve`` has stopped the control loop."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    except _Terminated:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def register(app: typer.Typer) -> None:
    app.command()(up)
