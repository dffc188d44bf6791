"""The PostgreSQL settings gpucloud warns about at start: read from a real server, judged purely."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from gpucloud.store.db import Database
from gpucloud.store.pg_checks import server_settings, warnings_for


def test_autovacuum_off_is_said_with_what_to_change() -> None:
    found = warnings_for({"autovacuum": "off", "track_counts": "on"})
    assert len(found) == 1
    assert "autovacuum = off" in found[0] and "set autovacuum = on" in found[0]
    assert warnings_for({"autovacuum": "on", "track_counts": "on"}) == []
    assert len(warnings_for({"autovacuum": "off", "track_counts": "off"})) == 2


def test_the_settings_come_from_the_server(pg_url: str) -> None:
    db = Database(pg_url)
    try:
        read = server_settings(db)
        with db.read() as session:
            shown = {name: session.execute(text(f"SHOW {name}")).scalar_one()
                     for name in ("autovacuum", "track_counts")}
    finally:
        db.dispose()
    assert read == shown


def test_sqlite_has_nothing_to_check(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    assert server_settings(db) == {}
    db.dispose()
