"""'gpucloud sim ettr': training time lost to faults at Llama 3's failure rate (offline)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from gpucloud.cli.common import JsonFlag
from gpucloud.cli.output import console, print_json
from gpucloud.core.ettr import LLAMA3_DAYS, RATE_PER_GPU_HOUR, Params, simulate
from gpucloud.scheduling.fgd_sim import parse_seeds

SIZES = (1024, 2048, 4096, 8192, 16384)


def ettr(
    days: Annotated[float, typer.Option(help="Wall-clock days per job.", min=1)] = LLAMA3_DAYS,
    seeds: Annotated[str, typer.Option(help="Seeds, e.g. 1-5 or 1,3.")] = "1-5",
    checkpoint_cost: Annotated[
        float, typer.Option(help="Seconds training pauses per checkpoint.", min=0.01)
    ] = Params.checkpoint_cost_s,
    reinit: Annotated[
        float, typer.Option(help="Seconds a restarted job needs to initialise (NCCL, load).",
                            min=0)
    ] = Params.reinit_s,
    resubmit: Annotated[
        float, typer.Option(help="Seconds before an owner resubmits after the job's own error.",
                            min=0)
    ] = Params.resubmit_s,
    as_json: JsonFlag = False,
) -> None:
    """Replay failures at Llama 3's rate (466 in 54 days on 16,384 GPUs) on jobs of 1,024 to
    16,384 GPUs through gpucloud's fault classification and restart logic; print the
    effective training time ratio."""
    params = Params(days=days, checkpoint_cost_s=checkpoint_cost, reinit_s=reinit,
                    resubmit_s=resubmit)
    runs = parse_seeds(seeds)
    results = simulate(SIZES, params, runs)
    mean = sum(r.ettr for r in results) / len(results)
    if as_json:
        print_json({
            "ettr": round(mean, 4),
            "per_size": [{**asdict(r), "ettr": round(r.ettr, 4),
                          "checkpoint_interval_s": round(r.checkpoint_interval_s, 1)}
                         for r in results],
            "failure_rate_per_gpu_hour": RATE_PER_GPU_HOUR,
            "params": {k: v for k, v in asdict(params).items() if k != "restart"},
            "seeds": list(runs),
        })
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("GPUS", "INTERRUPTIONS/JOB", "PLATFORM", "OWN ERRORS", "CHECKPOINT EVERY",
                   "ETTR"):
        table.add_column(column, justify="right")
    n = len(runs)
    for r in results:
        table.add_row(f"{r.gpus:,}", f"{r.interruptions / n:.0f}", f"{r.platform_restarts / n:.0f}",
                      f"{r.own_errors / n:.0f}", f"{r.checkpoint_interval_s:.0f} s",
                      f"{r.ettr:.4f}")
    console.print(table)
    console.print(f"ettr {mean:.4f} (mean over sizes; {days:g} days, seeds {seeds}; "
                  f"checkpoint cost {checkpoint_cost:g} s, re-init {reinit:g} s, "
                  f"resubmit {resubmit:g} s)", markup=False)


def register(sim_app: typer.Typer) -> None:
    sim_app.command("ettr")(ettr)
