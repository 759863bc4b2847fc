"""Postgres: a connection pool and versioned SQL migrations applied at start-up (idempotent, safe to race)."""

from __future__ import annotations

import logging
import select
from importlib import resources

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool
from psycopg_pool.base import AttemptWithBackoff

# psycopg_pool re-tries a lost server with exponential backoff (1, 2, 4, 8 s …): after a 6 s outage its next attempt
# can come 8 s after the server is back, while every job waits. A failed connect to the database is cheap: try about
# once a second instead (the chaos-under-load scenarios' Postgres restart windows judge the recovery).
AttemptWithBackoff.DELAY_BACKOFF = 1.0

log = logging.getLogger(__name__)
_MIGRATION_LOCK = 0x7665726973696D  # pg_advisory_lock key: "verisim"


def migrations() -> list[tuple[str, str]]:
    files = sorted(
        (p for p in resources.files("system.storage.migrations").iterdir() if p.name.endswith(".sql")),
        key=lambda p: p.name,
    )
    return [(p.name.removesuffix(".sql"), p.read_text()) for p in files]


def migrate(dsn: str) -> list[str]:
    """Apply every migration not yet applied, in order; returns the versions applied now."""
    applied_now = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            for version, sql in migrations():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(sql)
                    conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                applied_now.append(version)
                log.info("applied migration %s", version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    return applied_now


def check_idle_connection(conn: psycopg.Connection[DictRow]) -> None:
    """The pool's check before it hands out a connection: one that died with a Postgres restart or kill is replaced,
    not handed out. Without a round trip (psycopg_pool's own check sends a query each time, ~10 % of a worker's CPU):
    an idle connection has nothing to read, so a readable socket means the server closed it or sent an error (a
    terminated backend), and a closed or broken connection is known to psycopg already."""
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    if readable:
        conn.close()  # closed, the pool discards it and opens a new one (an open one would go back to the pool)
        raise psycopg.OperationalError("the server closed the connection (or spoke unasked) while it was idle")


DictPool = ConnectionPool[psycopg.Connection[DictRow]]  # every row a dict, by column name


def make_pool(dsn: str, size: int) -> DictPool:
    """Autocommit connections: a statement is its own transaction, several go in ``conn.transaction()``."""
    pool = ConnectionPool(
        dsn,
        connection_class=psycopg.Connection[DictRow],
        min_size=1,
        max_size=size,
        kwargs={"row_factory": dict_row, "autocommit": True},
        open=False,
        timeout=10,
        check=check_idle_connection,
    )
    pool.open(wait=True, timeout=15)
    return pool


def columns_of(rows: list[tuple]) -> list[list]:
    """Rows as columns: the arrays of an ``INSERT … SELECT * FROM unnest(…)`` (one statement for many rows)."""
    return [list(col) for col in zip(*rows, strict=True)]
