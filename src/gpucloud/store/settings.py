"""Operator settings in the database (``gpucloud admin config set/get``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gpucloud.core.config import SETTINGS, parse_setting
from gpucloud.store.models import PlatformSetting


def get_setting(session: Session, key: str) -> Any:
    if key not in SETTINGS:
        parse_setting(key, "")  # raises the 'unknown setting' error with the known keys
    row = session.get(PlatformSetting, key)
    return SETTINGS[key].default if row is None else parse_setting(key, row.value)


def set_setting(session: Session, key: str, text: str, now: datetime) -> Any:
    value = parse_setting(key, text)
    row = session.get(PlatformSetting, key)
    if row is None:
        session.add(PlatformSetting(key=key, value=str(value), updated_at=now))
    else:
        row.value, row.updated_at = str(value), now
    return value


def all_settings(session: Session) -> dict[str, Any]:
    stored = {r.key: r.value for r in session.scalars(select(PlatformSetting))}
    return {
        key: parse_setting(key, stored[key]) if key in stored else spec.default
        for key, spec in SETTINGS.items()
    }
