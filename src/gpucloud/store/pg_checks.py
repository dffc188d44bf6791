"""What a PostgreSQL server's settings would do to gpucloud, said once at start.

gpucloud updates its rows (a job's state, a wallet's balance) many times in their life: without
autovacuum, dead row versions pile up and the planner never learns the tables' sizes (no
ANALYZE), so every read gets slower as the tables grow (bench/load.py on a server with it off:
listing jobs went from 1.6 ms to 5.4 ms a call within three minutes, and the API's p99 with it).
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import text

from gpucloud.store.db import Database

CHECKED = ("autovacuum", "track_counts")


def warnings_for(settings: Mapping[str, str]) -> list[str]:
    """One sentence per setting that hurts, with what to change. Pure."""
    found = []
    for name in CHECKED:
        if settings.get(name, "on") == "off":
            found.append(f"PostgreSQL has {name} = off: tables bloat and query plans go stale "
                         f"as they grow, and the API slows down with them; set {name} = on "
                         "(postgresql.conf, or ALTER SYSTEM) and reload the server")
    return found


def server_settings(db: Database) -> dict[str, str]:
    """The checked settings of the server behind ``db`` (empty on SQLite)."""
    if db.is_sqlite:
        return {}
    with db.read() as session:
        rows = session.execute(text("SELECT name, setting FROM pg_settings WHERE name = ANY(:n)"),
                               {"n": list(CHECKED)})
        return {str(name): str(setting) for name, setting in rows}
