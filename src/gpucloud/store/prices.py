"""The price book in the database: immutable versions, the newest in force from its time."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gpucloud.billing.pricing import PackageOffer, PriceVersion
from gpucloud.store.models import PriceVersionRow

# Starting list prices per hour in CNY, for a fresh install to have something sensible to show.
# They are placeholders for the operator to replace with 'gpucloud price set', not market data.
DEFAULT_GPU_HOUR_CNY = {
    "H100": "28.00",
    "H800": "26.00",
    "A100-80G": "12.00",
    "A100-40G": "9.00",
    "A800": "11.00",
    "L40S": "6.00",
    "RTX4090": "2.50",
    "MI300X": "22.00",
    "Ascend910B": "9.00",
}


def to_version(row: PriceVersionRow) -> PriceVersion:
    return PriceVersion(
        version=row.version,
        effective_from=row.effective_from,
        currency=row.currency,
        gpu_hour={str(k): int(v) for k, v in row.gpu_hour.items()},
        cpu_core_hour=row.cpu_core_hour,
        memory_gib_hour=row.memory_gib_hour,
        storage_gib_month=row.storage_gib_month,
        spot_discount_pct=row.spot_discount_pct,
        packages=tuple(PackageOffer(**p) for p in row.packages),
        server_hour={str(k): int(v) for k, v in (row.server_hour or {}).items()},
    )


def load_versions(session: Session) -> list[PriceVersion]:
    rows = session.scalars(
        select(PriceVersionRow).order_by(PriceVersionRow.effective_from, PriceVersionRow.version)
    )
    return [to_version(r) for r in rows]


def latest_version_number(session: Session) -> int:
    return int(session.scalar(select(func.max(PriceVersionRow.version))) or 0)


def add_version(session: Session, version: PriceVersion, created_by: str, now: datetime) -> None:
    session.add(
        PriceVersionRow(
            version=version.version,
            effective_from=version.effective_from,
            currency=version.currency,
            gpu_hour=dict(version.gpu_hour),
            cpu_core_hour=version.cpu_core_hour,
            memory_gib_hour=version.memory_gib_hour,
            storage_gib_month=version.storage_gib_month,
            spot_discount_pct=version.spot_discount_pct,
            packages=[
                {
                    "name": p.name,
                    "model": p.model,
                    "gpu_hours": p.gpu_hours,
                    "price_minor": p.price_minor,
                }
                for p in version.packages
            ],
            server_hour=dict(version.server_hour),
            created_by=created_by,
            created_at=now,
        )
    )
    session.flush()


def bootstrap_prices(session: Session, now: datetime, effective_from: datetime) -> None:
    """Version 1 on first start: list prices per hour, 0.10/core-hour, 0.02/GiB-hour of
    memory, 0.30/GiB-month of storage, spot 50% off, one 100-hour H100 package at 20% off."""
    if latest_version_number(session):
        return
    gpu = {model: int(price.replace(".", "")) for model, price in DEFAULT_GPU_HOUR_CNY.items()}
    add_version(
        session,
        PriceVersion(
            version=1,
            effective_from=effective_from,
            currency="CNY",
            gpu_hour=gpu,
            cpu_core_hour=10,
            memory_gib_hour=2,
            storage_gib_month=30,
            spot_discount_pct=50,
            packages=(PackageOffer("h100-100h", "H100", 100, gpu["H100"] * 100 * 80 // 100),),
        ),
        "bootstrap",
        now,
    )
