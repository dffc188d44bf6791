"""``--engine slurm``: settings to a SlurmEngine, with every mistake said in one line."""

from __future__ import annotations

import getpass
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from gpucloud.core.catalog import find_model
from gpucloud.core.errors import EngineError
from gpucloud.engines.slurm.api import SlurmApi, SlurmUnavailable
from gpucloud.engines.slurm.cli import CliApi
from gpucloud.engines.slurm.engine import SlurmEngine
from gpucloud.engines.slurm.rest import RestApi
from gpucloud.settings import Settings

DEFAULT_CONF = Path("/etc/slurm/slurm.conf")
COMMANDS = ("sbatch", "squeue", "sinfo", "scancel", "scontrol")


@dataclass(frozen=True)
class Built:
    engine: SlurmEngine
    note: str


def slurm_conf(settings: Settings) -> Path:
    """The slurm.conf the commands use: --slurm-conf, $SLURM_CONF, or Slurm's default."""
    if settings.slurm_conf is not None:
        path, where = settings.slurm_conf, "--slurm-conf"
    elif os.environ.get("SLURM_CONF"):
        path, where = Path(os.environ["SLURM_CONF"]), "SLURM_CONF"
    elif DEFAULT_CONF.exists():
        return DEFAULT_CONF
    else:
        raise EngineError(f"--engine slurm needs a Slurm config: pass --slurm-conf PATH or set "
                          f"SLURM_CONF (there is no {DEFAULT_CONF}), or use slurmrestd with "
                          "--slurm-rest-url and SLURMRESTD_TOKEN")
    if not path.is_file():
        raise EngineError(f"{where} {path}: no such file")
    return path


def cli_api(settings: Settings) -> CliApi:
    missing = [c for c in COMMANDS if shutil.which(c) is None]
    if missing:
        raise EngineError(f"--engine slurm with the Slurm CLI needs {', '.join(missing)} on "
                          "PATH: install the Slurm client (Debian: slurm-client), or use "
                          "slurmrestd with --slurm-rest-url and SLURMRESTD_TOKEN")
    return CliApi(slurm_conf(settings))


def rest_api(settings: Settings) -> RestApi:
    if not settings.slurm_rest_url:
        raise EngineError("--slurm-api rest needs --slurm-rest-url (e.g. http://host:6820)")
    if not settings.slurm_rest_token:
        raise EngineError("--slurm-api rest needs a JWT: set SLURMRESTD_TOKEN "
                          "(scontrol token username=USER lifespan=SECONDS)")
    # slurmrestd 22.05 cannot drain or resume nodes: the CLI does that when it is here.
    try:
        node_admin: SlurmApi | None = cli_api(settings)
    except EngineError:
        node_admin = None
    return RestApi(settings.slurm_rest_url, settings.slurm_rest_token,
                   settings.slurm_rest_user or getpass.getuser(), node_admin=node_admin)


def default_api(settings: Settings) -> str:
    """The CLI where it is installed (it does everything, drain and resume included), else
    slurmrestd when a URL is set; see docs/slurm.md for the figures behind the choice."""
    if all(shutil.which(c) for c in COMMANDS) or not settings.slurm_rest_url:
        return "cli"
    return "rest"


def build(settings: Settings) -> Built:
    choice = settings.slurm_api or default_api(settings)
    if choice not in ("cli", "rest"):
        raise EngineError(f"--slurm-api {choice!r}: choose cli or rest")
    if settings.slurm_gpu_model and find_model(settings.slurm_gpu_model) is None:
        raise EngineError(f"--slurm-gpu-model {settings.slurm_gpu_model!r} is not a known GPU "
                          "model (see the catalog)")
    api = cli_api(settings) if choice == "cli" else rest_api(settings)
    try:
        release = api.version()
    except SlurmUnavailable as err:
        raise EngineError(f"cannot reach Slurm: {err}") from err
    try:  # for the commands the engine runs itself (srun for shells), under either API
        conf: Path | None = slurm_conf(settings)
    except EngineError:
        conf = None
    engine = SlurmEngine(api, settings.slurm_dir, partition=settings.slurm_partition,
                         default_gpu_model=settings.slurm_gpu_model, slurm_conf=conf)
    nodes = engine.nodes()
    if not nodes:
        where = f"partition {settings.slurm_partition!r}" if settings.slurm_partition else "Slurm"
        raise EngineError(f"{where} reports no nodes")
    adopted = engine.adopt()
    gpus = sum(len(n.devices) for n in nodes)
    via = "the Slurm CLI" if choice == "cli" else f"slurmrestd {settings.slurm_rest_url}"
    note = (f"Slurm {release} via {via}: {len(nodes)} nodes, {gpus} GPUs"
            f"{f' in partition {settings.slurm_partition}' if settings.slurm_partition else ''}"
            f"; {adopted} gpucloud jobs in Slurm; run files in {settings.slurm_dir}")
    return Built(engine, note)
