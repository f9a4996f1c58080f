"""The safe forms of the operations that lock a busy table out; revisions call these instead of ``op.*``.

Autogenerate writes what is right for an empty table. On ``student_course`` with 10 million
rows under traffic, some of it holds a lock that blocks the application for seconds. Each
function here does the same change holding such a lock for milliseconds at most (the README's
"Adding a migration" gives the lock time the benchmark measured for each):

- ``create_index_concurrently`` / ``drop_index_concurrently``: ``CONCURRENTLY``, which holds only
  SHARE UPDATE EXCLUSIVE, in an autocommit block. A build that failed or was cancelled leaves an
  INVALID index; the next run drops it and builds again, it never keeps it behind ``IF NOT EXISTS``.
- ``add_check_constraint`` / ``add_foreign_key``: ``NOT VALID`` (a brief ACCESS EXCLUSIVE, no
  scan), then ``VALIDATE`` in a transaction of its own, which scans under SHARE UPDATE EXCLUSIVE.
- ``set_not_null``: a validated ``CHECK (column IS NOT NULL)`` first, so that ``SET NOT NULL``
  skips its scan (PostgreSQL 12+), then the CHECK is dropped.
- ``backfill``: an UPDATE in keyset batches in primary-key order, each its own short transaction,
  resumable after a kill, with a progress line per batch.
- ``refuse_data_loss``: a downgrade step that would drop what users stored refuses, naming what
  and how many rows, unless ``-x allow_data_loss=true``.

A concurrent build or a validation waits for transactions older than it, and that wait counts
against ``lock_timeout``: these statements run under their own, longer timeouts
(MIGRATION_SLOW_LOCK_TIMEOUT, MIGRATION_SLOW_STATEMENT_TIMEOUT), and every other statement keeps
the short ones. PostgreSQL cannot run them inside a transaction, so each commits what the
revision did before it (Alembic's ``autocommit_block``); inside a transaction the caller holds
(pytest-alembic's tests), they fall back to the plain form, which is what that caller asked for.
Everything renders to SQL too: the offline script stays a valid psql script.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from alembic import context, op
from sqlalchemy import text

from migrations.runner import CALLER_TRANSACTION, Settings, committing

log = logging.getLogger("alembic.operations")


@committing
def create_index_concurrently(
    name: str, table: str, columns: Sequence[str], *, unique: bool = False, where: str | None = None
) -> None:
    """``CREATE INDEX CONCURRENTLY name ON table (columns)``; `columns` may be expressions."""
    definition = f"ON {table} ({', '.join(columns)})" + (f" WHERE {where}" if where else "")
    kind = "UNIQUE INDEX" if unique else "INDEX"
    if in_caller_transaction():
        op.execute(f"CREATE {kind} {name} {definition}")
        return
    with concurrently():
        drop_index_if_invalid(name)
        op.execute(f"CREATE {kind} CONCURRENTLY IF NOT EXISTS {name} {definition}")


@committing
def drop_index_concurrently(name: str) -> None:
    """``DROP INDEX CONCURRENTLY IF EXISTS name``."""
    if in_caller_transaction():
        op.execute(f"DROP INDEX IF EXISTS {name}")
        return
    with concurrently():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


def drop_index_if_invalid(name: str) -> None:
    """Drop `name` if a failed or cancelled concurrent build left it INVALID."""
    invalid = (
        "SELECT format('DROP INDEX CONCURRENTLY %s', indexrelid::regclass) FROM pg_index "
        f"WHERE indexrelid = to_regclass('{name}') AND NOT indisvalid"
    )
    if context.is_offline_mode():
        # psql runs each row the query returns as a statement: none when the index is valid or absent.
        op.get_context().impl.static_output(f"{invalid}\n\\gexec")
        return
    for (statement,) in op.get_bind().execute(text(invalid)):
        log.warning("Index %s is INVALID (a concurrent build failed or was cancelled): dropping it", name)
        op.execute(statement)


@committing
def add_check_constraint(name: str, table: str, condition: str) -> None:
    """``ADD CONSTRAINT name CHECK (condition) NOT VALID``, then VALIDATE in its own transaction."""
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({condition}) NOT VALID")
    validate_constraint(name, table)


@committing
def add_foreign_key(
    name: str,
    table: str,
    columns: Sequence[str],
    referred_table: str,
    referred_columns: Sequence[str],
    *,
    ondelete: str | None = None,
) -> None:
    """``ADD CONSTRAINT name FOREIGN KEY ... NOT VALID``, then VALIDATE in its own transaction."""
    action = f" ON DELETE {ondelete}" if ondelete else ""
    op.execute(
        f"ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY ({', '.join(columns)}) "
        f"REFERENCES {referred_table} ({', '.join(referred_columns)}){action} NOT VALID"
    )
    validate_constraint(name, table)


@committing
def validate_constraint(name: str, table: str) -> None:
    """Scan for rows that break the constraint under SHARE UPDATE EXCLUSIVE: reads and writes go on."""
    statement = f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}"
    if in_caller_transaction():
        op.execute(statement)
        return
    with concurrently():
        op.execute(statement)


@committing
def set_not_null(table: str, column: str) -> None:
    """``SET NOT NULL`` without scanning under ACCESS EXCLUSIVE: a validated CHECK proves it first."""
    check = f"ck_{table}_{column}_not_null"
    add_check_constraint(check, table, f"{column} IS NOT NULL")
    op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL")
    op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {check}")


@committing
def backfill(
    table: str,
    assignments: str,
    where: str,
    *,
    name: str,
    key: Sequence[str],
    batch_size: int = 10_000,
    pause: float = 0.0,
    replica_wait: float = 0.0,
) -> None:
    """``UPDATE table SET assignments WHERE where``, in keyset batches of `batch_size` rows.

    Batches follow the primary key `key` (bigint columns), each its own transaction, so no row
    lock lasts longer than one batch. Progress (``name``, the last key done) is committed with each
    batch in ``alembic_backfills``: a rerun after a kill continues from there. Each batch reports
    rows done, rows in all (estimated) and rows per second as a NOTICE, which the migrator logs on
    stderr and psql prints. `pause` seconds between batches leave room to the application;
    `replica_wait` > 0 waits, up to that many seconds, after each batch until every standby has
    replayed it (throttling on replay lag). The whole loop is one PL/pgSQL block, so the offline
    script runs it the same way.
    """
    keys = ", ".join(key)
    last = ", ".join(f"last[{position}]" for position in range(1, len(key) + 1))
    descending = ", ".join(f"{column} DESC" for column in key)
    label = sql_literal(name)
    if in_caller_transaction():
        op.execute(f"UPDATE {table} SET {assignments} WHERE {where}")
        return
    with concurrently():
        op.execute(
            f"""
            DO $$
            DECLARE
                last bigint[];
                done bigint;
                visited bigint;
                total bigint := greatest((SELECT reltuples FROM pg_class WHERE oid = '{table}'::regclass), 0);
                started timestamptz := clock_timestamp();
                deadline timestamptz;
                written pg_lsn;
            BEGIN
                CREATE TABLE IF NOT EXISTS {BACKFILLS} (
                    name text PRIMARY KEY, last_key bigint[], rows_done bigint NOT NULL DEFAULT 0
                );
                INSERT INTO {BACKFILLS} (name) VALUES ({label}) ON CONFLICT DO NOTHING;
                SELECT last_key, rows_done INTO last, done FROM {BACKFILLS} WHERE name = {label};
                IF last IS NOT NULL THEN
                    RAISE NOTICE 'backfill %: resuming after key %, % rows done', {label}, last, done;
                END IF;
                COMMIT;
                LOOP
                    WITH batch AS (
                        SELECT {keys} FROM {table}
                        WHERE last IS NULL OR ({keys}) > ({last})
                        ORDER BY {keys} LIMIT {batch_size}
                    ), updated AS (
                        UPDATE {table} SET {assignments}
                        WHERE ({keys}) IN (SELECT {keys} FROM batch) AND ({where})
                    )
                    SELECT count(*), (SELECT ARRAY[{keys}] FROM batch ORDER BY {descending} LIMIT 1)
                    INTO visited, last FROM batch;
                    EXIT WHEN visited = 0;
                    done := done + visited;
                    UPDATE {BACKFILLS} SET last_key = last, rows_done = done WHERE name = {label};
                    COMMIT;
                    RAISE NOTICE 'backfill %: % of ~% rows, % rows/s', {label}, done, greatest(total, done),
                        round(done / greatest(extract(epoch FROM clock_timestamp() - started), 0.001));
                    deadline := clock_timestamp() + make_interval(secs => {replica_wait});
                    written := pg_current_wal_lsn();
                    WHILE clock_timestamp() < deadline AND EXISTS (
                        SELECT FROM pg_stat_replication WHERE replay_lsn IS NULL OR replay_lsn < written
                    ) LOOP
                        PERFORM pg_sleep(0.01);
                    END LOOP;
                    PERFORM pg_sleep({pause});
                END LOOP;
                DELETE FROM {BACKFILLS} WHERE name = {label};
                IF NOT EXISTS (SELECT FROM {BACKFILLS}) THEN
                    DROP TABLE {BACKFILLS};
                END IF;
            END $$
            """
        )


BACKFILLS = "alembic_backfills"


@contextmanager
def concurrently() -> Iterator[None]:
    """An autocommit block under the slow statements' timeouts, and the usual ones again after it."""
    settings = Settings.from_environment()
    with op.get_context().autocommit_block():
        for name, value in settings.slow_timeouts.items():
            op.execute(f"SET {name} = '{value}'")
        yield
        for name, value in settings.timeouts.items():
            op.execute(f"SET {name} = '{value}'")


def in_caller_transaction() -> bool:
    """Whether the caller runs the migration inside a transaction of its own (pytest-alembic does)."""
    migration = op.get_context()
    return migration.config is not None and bool(migration.config.attributes.get(CALLER_TRANSACTION))


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class Drop:
    """What a downgrade step drops: a table, or one column of it (only rows where it is set count)."""

    table: str
    column: str | None = None

    def finding(self) -> str:
        """SQL giving this drop's part of the refusal, or '' when it loses nothing."""
        phrase, where = (
            (f"{self.table}.{self.column} is set in", f" WHERE {self.column} IS NOT NULL")
            if self.column
            else (f"{self.table} holds", "")
        )
        return (
            f"(SELECT CASE WHEN n = 0 THEN '' ELSE format('{phrase} %s row%s; ', n, "
            f"CASE WHEN n = 1 THEN '' ELSE 's' END) END "
            f"FROM (SELECT count(*) AS n FROM {self.table}{where}) AS counted)"
        )


def refuse_data_loss(*drops: Drop, why: str = "") -> None:
    """Refuse, in SQL so that offline scripts refuse too, when any of `drops` would lose a user's data.

    One line names each table or column that holds data and in how many rows, unless the
    migrator runs with ``-x allow_data_loss=true``. Call it before the statements that drop;
    `why` says whose rows these are, when the step's context knows.
    """
    if context.get_x_argument(as_dictionary=True).get("allow_data_loss", "").lower() == "true":
        return
    because = f" ({why})" if why else ""
    refusal = (
        f"downgrading would drop them{because}. Back them up, then run: "
        "alembic -x allow_data_loss=true downgrade ..."
    )
    op.execute(
        f"""
        DO $$
        DECLARE found text := {" || ".join(drop.finding() for drop in drops)};
        BEGIN
            IF found <> '' THEN
                RAISE EXCEPTION '%', found || {sql_literal(refusal)};
            END IF;
        END $$
        """
    )
