"""``alembic upgrade``, run in this process through env.py as the command line runs it, and recorded.

The recording hooks the migrator's own Engine (no change to env.py or the revisions):

- each revision's start, from Alembic's "Running upgrade ..." log record, with what other
  sessions could see then: which tables held rows, which relations existed, each table's
  relfilenode (read on a connection of our own);
- each statement's text, start and end, and whether it failed;
- right after each statement, on the migrator's connection, inside its transaction: the
  relation locks the transaction holds and each table's relfilenode. Locks are held until the
  transaction ends, so this lists every lock a statement took, however briefly it ran, where
  sampling pg_locks every few milliseconds could miss it;
- when each transaction ended: after the COMMIT or ROLLBACK returned, the server having
  released its locks.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from sqlalchemy import URL, Engine, event
from sqlalchemy.engine import ExceptionContext

from migrations.bookkeeping import MIGRATION_TABLES
from migrations.database.messages import first_line
from migrations.database.scratch import alembic_config
from migrations.database.url import conninfo
from migrations.gate.locks import Lock

STEP_LOG = "alembic.runtime.migration"

# What other sessions see at a revision's start: tables that hold rows, and every relation.
VISIBLE = """
SELECT c.oid, c.relname, coalesce(t.relname, c.relname), c.relkind, pg_relation_filenode(c.oid),
       c.relkind IN ('r', 'p') AND pg_relation_size(c.oid) > 0
FROM pg_class AS c
LEFT JOIN pg_index AS i ON i.indexrelid = c.oid
LEFT JOIN pg_class AS t ON t.oid = i.indrelid
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'i', 'I')
"""
# On the migrator's connection right after a statement: its transaction's locks, tables' files.
AFTER_STATEMENT = """
SELECT 'lock', l.relation::oid, coalesce(c.relname, l.relation::text),
       coalesce(t.relname, c.relname, l.relation::text), l.mode
FROM pg_locks AS l
LEFT JOIN pg_class AS c ON c.oid = l.relation
LEFT JOIN pg_index AS i ON i.indexrelid = l.relation
LEFT JOIN pg_class AS t ON t.oid = i.indrelid
WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  -- schema public's relations, and those this transaction dropped (the others still see them)
  AND (c.oid IS NULL OR c.relnamespace = 'public'::regnamespace)
UNION ALL
SELECT 'file', c.oid, c.relname, c.relname, pg_relation_filenode(c.oid)::text
FROM pg_class AS c
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
"""


@dataclass
class Statement:
    sql: str
    revision: str | None
    transaction: int
    started: float
    ended: float = math.nan
    error: str | None = None
    # Whether the connection was still inside a transaction after it: its locks stay until it ends.
    in_transaction: bool = False
    transaction_ended: float = math.nan
    locks: frozenset[Lock] = frozenset()
    filenodes: dict[str, int] = field(default_factory=dict)

    @property
    def locks_released(self) -> float:
        return self.transaction_ended if self.in_transaction else self.ended


@dataclass
class Revision:
    revision: str
    started: float
    populated: frozenset[str]  # tables holding rows when it began
    existing: dict[int, tuple[str, str]]  # the tables and indexes other sessions saw: oid: (name, table)
    filenodes: dict[str, int]
    statements: list[Statement] = field(default_factory=list)


@dataclass
class Recording:
    revisions: list[Revision] = field(default_factory=list)
    setup: list[Statement] = field(default_factory=list)
    started: float = math.nan
    ended: float = math.nan
    error: str | None = None

    @property
    def statements(self) -> Iterator[Statement]:
        yield from self.setup
        for revision in self.revisions:
            yield from revision.statements


class Recorder:
    """Hooks an Engine and Alembic's step log; fills a Recording."""

    def __init__(self, url: URL, on_backend: Callable[[int], None]) -> None:
        self.url = url
        self.on_backend = on_backend
        self.recording = Recording()
        self.transaction = 0
        self.current: Statement | None = None
        self.open: list[Statement] = []  # statements whose transaction has not ended yet
        self.observer: psycopg.Connection[Any] | None = None
        # The migrator's thread: a helper may run statements on other connections of the same
        # engine from threads of its own (a watcher of who blocks the migrator, say).
        self.thread = threading.get_ident()

    # Alembic's "Running upgrade a -> b" record: a revision starts.
    def step_started(self, revision: str) -> None:
        assert self.observer is not None
        populated, existing, filenodes = set(), {}, {}
        for oid, name, table, kind, filenode, holds_rows in self.observer.execute(VISIBLE):
            existing[oid] = (name, table)
            if kind in ("r", "p") and name not in MIGRATION_TABLES:
                filenodes[name] = filenode
                if holds_rows:
                    populated.add(name)
        self.recording.revisions.append(
            Revision(revision, time.monotonic(), frozenset(populated), existing, filenodes)
        )

    def before(self, conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if threading.get_ident() != self.thread:
            return
        self.on_backend(cursor.connection.info.backend_pid)
        revision = self.recording.revisions[-1] if self.recording.revisions else None
        statement = Statement(
            sql, revision.revision if revision else None, self.transaction, time.monotonic()
        )
        (revision.statements if revision else self.recording.setup).append(statement)
        self.current = statement

    def after(self, conn: Any, cursor: Any, *args: Any) -> None:
        statement = self.current
        if statement is None or threading.get_ident() != self.thread:
            return
        statement.ended = time.monotonic()
        dbapi = cursor.connection
        statement.in_transaction = dbapi.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        locks, filenodes = set(), {}
        for kind, oid, relation, table, value in dbapi.execute(AFTER_STATEMENT).fetchall():
            if kind == "lock":
                locks.add(Lock(oid, relation, table, value))
            elif relation not in MIGRATION_TABLES:
                filenodes[relation] = int(value)
        statement.locks, statement.filenodes = frozenset(locks), filenodes
        if statement.in_transaction:
            self.open.append(statement)
        self.current = None

    def failed(self, context: ExceptionContext) -> None:
        if self.current is not None and threading.get_ident() == self.thread:
            self.current.ended = time.monotonic()
            self.current.error = first_line(context.original_exception)
            # A failed statement leaves its transaction open (aborted) until the rollback.
            self.current.in_transaction = True
            self.open.append(self.current)
            self.current = None

    def transaction_ended(self) -> None:
        now = time.monotonic()
        for statement in self.open:
            statement.transaction_ended = now
        self.open.clear()
        self.transaction += 1

    @contextmanager
    def hooked(self, engine: Engine) -> Iterator[None]:
        # A filter, not a handler: env.py's fileConfig() empties the handlers of alembic's loggers.
        step_log = logging.getLogger(STEP_LOG)
        steps = StepFilter(self)
        step_log.addFilter(steps)
        dialect = engine.dialect
        commit, rollback = dialect.do_commit, dialect.do_rollback

        def do_commit(dbapi_connection: Any) -> None:
            commit(dbapi_connection)
            if threading.get_ident() == self.thread:
                self.transaction_ended()

        def do_rollback(dbapi_connection: Any) -> None:
            rollback(dbapi_connection)
            if threading.get_ident() == self.thread:
                self.transaction_ended()

        # This engine's own dialect instance: the server has released the locks once these return.
        dialect.do_commit = do_commit  # type: ignore[method-assign]
        dialect.do_rollback = do_rollback  # type: ignore[method-assign]
        listeners: list[tuple[str, Callable[..., None]]] = [
            ("before_cursor_execute", self.before),
            ("after_cursor_execute", self.after),
            ("handle_error", self.failed),
        ]
        for name, listener in listeners:
            event.listen(engine, name, listener)
        try:
            with psycopg.connect(conninfo(self.url), autocommit=True) as self.observer:
                yield
        finally:
            for name, listener in listeners:
                event.remove(engine, name, listener)
            dialect.do_commit, dialect.do_rollback = commit, rollback  # type: ignore[method-assign]
            step_log.removeFilter(steps)
            self.observer = None


class StepFilter(logging.Filter):
    """Sees Alembic's "Running upgrade a -> b" record, which it logs as each step begins."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def filter(self, record: logging.LogRecord) -> bool:
        step = record.args[0] if record.msg == "Running %s" and isinstance(record.args, tuple) else None
        info = getattr(step, "info", None)
        if info is not None and info.up_revision_id:
            self.recorder.step_started(info.up_revision_id)
        return True


def upgrade(
    url: URL,
    target: str,
    *,
    script_location: Path | None = None,
    on_backend: Callable[[int], None] = lambda pid: None,
) -> Recording:
    """``alembic upgrade target`` on `url`, recorded; a failure is recorded, not raised."""
    config = alembic_config(url, script_location=script_location)
    engine: Engine = config.attributes["connection"]
    recorder = Recorder(url, on_backend)
    recording = recorder.recording
    with recorder.hooked(engine):
        recording.started = time.monotonic()
        try:
            command.upgrade(config, target)
        except Exception as error:  # noqa: BLE001 - any failure of the migration is a finding, not a crash
            recording.error = first_line(error)
        finally:
            recording.ended = time.monotonic()
            engine.dispose()
    return recording
