"""Connections and transactions for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

# The database is away (restarting, a dropped connection, a full pool, a lock or serialization
# failure): the work was not done and may be retried. The API answers 503, controllers back off.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (OperationalError, InterfaceError, PoolTimeout)
POOL_SIZE = 24


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'gpucloud.db'}"


class Database:
    """One engine, two kinds of transaction.

    On SQLite a write transaction starts with ``BEGIN IMMEDIATE`` so that it takes the write lock
    up front and waits for it (busy_timeout) instead of failing halfway with 'database is locked'
    when a read lock cannot be upgraded. Reads stay concurrent thanks to WAL. Writers of this
    process also queue on a thread lock first: SQLite's busy handler waits by sleeping in
    growing steps (up to 100 ms), so a writer that finds the lock taken would otherwise sleep
    long after it was released. Other processes still meet at SQLite's lock.
    """

    def __init__(self, url: str, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        # The pool keeps a connection for each API thread (api/routing.py) and the
        # controllers: a connection opened past the pool is closed after use, and reopening one
        # (SQLite's PRAGMAs) was a tenth of the API's time under load.
        kwargs: dict[str, Any] = {"echo": echo, "pool_size": POOL_SIZE, "max_overflow": 10}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = sessionmaker(
            self.engine.execution_options(gpucloud_write=True), expire_on_commit=False
        )
        self._write_lock = threading.Lock() if self.is_sqlite else contextlib.nullcontext()

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._reader() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits when the block ends and rolls back if it raises."""
        with self._write_lock, self._writer() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        write = connection.get_execution_options().get("gpucloud_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
