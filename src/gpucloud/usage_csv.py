"""Usage as CSV: one row per job, the same columns from the CLI (`gpucloud usage --csv`) and
the console's download."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from gpucloud.schemas import UsageOut

USAGE_CSV_COLUMNS = (
    "job_id",
    "job_name",
    "gpu_model",
    "gpus",
    "seconds",
    "gpu_seconds",
    "card_seconds_from_packages",
    "cost",
    "currency",
    "started_at",
    "kind",
    "ref_id",
    "quantity",
)


def usage_csv(rows: Sequence[UsageOut]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(USAGE_CSV_COLUMNS)
    for row in rows:
        writer.writerow(
            [row.job_id or "", row.job_name or "", row.gpu_model or "", row.gpus, row.seconds,
             row.gpu_seconds, row.card_seconds_from_packages, row.cost, row.currency,
             row.started_at.isoformat(), row.kind, row.ref_id, row.quantity]
        )
    return out.getvalue()
