"""A thread that reads pg_locks every few milliseconds: the migrator's locks, and who waits.

Each tick is one query on a connection of its own: every relation lock the migrator's backend
holds or waits for (tables and indexes of schema public), and which of the application's
backends wait for the migrator, for a row lock too (pg_locks does not list row locks;
``pg_blocking_pids`` names whom a waiter waits for). Ticks catch what the migrator's own
after-statement snapshots cannot: the locks of a statement that runs outside a transaction
(CREATE INDEX CONCURRENTLY holds its lock only while it runs), requests still waiting in the
queue, and the moment, within a long statement, a lock was taken. A lock held for d seconds is
seen for d plus or minus one tick; ``gaps`` gives the ticks' real spacing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sqlalchemy import URL

from migrations.database.url import conninfo
from migrations.gate.locks import Lock

INTERVAL = 0.005

TICK = """
SELECT l.relation::oid, coalesce(c.relname, l.relation::text),
       coalesce(t.relname, c.relname, l.relation::text), l.mode, l.granted, coalesce(i.indislive, true),
       (SELECT array_agg(a.pid) FROM pg_stat_activity AS a
        WHERE a.application_name = %(application)s AND a.wait_event_type = 'Lock'
          AND %(pid)s = ANY(pg_blocking_pids(a.pid)))
FROM (SELECT 1) AS one
LEFT JOIN (
    pg_locks AS l
    LEFT JOIN pg_class AS c ON c.oid = l.relation
    LEFT JOIN pg_index AS i ON i.indexrelid = l.relation
    LEFT JOIN pg_class AS t ON t.oid = i.indrelid
) ON l.pid = %(pid)s AND l.locktype = 'relation'
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    -- relations of schema public, and those only the migrator's open transaction can see yet
    AND (c.oid IS NULL OR c.relnamespace = 'public'::regnamespace)
"""


@dataclass(frozen=True)
class Sighting:
    lock: Lock
    granted: bool
    # False for an index DROP INDEX CONCURRENTLY has made dead: no query plans with it or locks it.
    live: bool


@dataclass(frozen=True)
class Tick:
    asked: float  # the server read pg_locks between these two moments
    at: float
    sightings: tuple[Sighting, ...]
    blocked: frozenset[int]  # the application's backends waiting for the migrator


@dataclass
class LockSampler:
    url: URL
    application_name: str
    interval: float = INTERVAL
    pid: int | None = None
    ticks: list[Tick] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    @contextmanager
    def running(self) -> Iterator[LockSampler]:
        with psycopg.connect(conninfo(self.url), autocommit=True) as conn:
            thread = threading.Thread(target=self._run, args=(conn,), name="lock sampler", daemon=True)
            thread.start()
            try:
                yield self
            finally:
                self._stop.set()
                thread.join()

    def _run(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        cursor = conn.cursor()
        while not self._stop.is_set():
            pid = self.pid
            if pid is not None:
                asked = time.monotonic()
                rows = cursor.execute(
                    TICK, {"pid": pid, "application": self.application_name}, prepare=True
                ).fetchall()
                self.ticks.append(tick(asked, time.monotonic(), rows))
            self._stop.wait(self.interval)

    def gaps(self) -> list[float]:
        """Seconds between consecutive ticks."""
        return [later.at - earlier.at for earlier, later in zip(self.ticks, self.ticks[1:], strict=False)]


def tick(asked: float, at: float, rows: list[tuple[Any, ...]]) -> Tick:
    sightings = tuple(
        Sighting(Lock(oid, relation, table, mode), granted, live)
        for oid, relation, table, mode, granted, live, _ in rows
        if oid is not None
    )
    return Tick(asked, at, sightings, frozenset(rows[0][6] or ()) if rows else frozenset())
