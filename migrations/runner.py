"""The machinery env.py runs migrations with; env.py's docstring says why each piece exists.

- ``Settings``: the timeouts and the lock wait, read from the environment once and checked.
- ``offline_session``: the same timeouts and advisory lock, written into a ``--sql`` script.
- ``session``: an online migrator's connection: connected with readable errors, under the
  timeouts, holding the advisory lock, with the plan of what this command will do.
- ``readable_errors``: a database error as one ``FAILED:`` line.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from logging.config import fileConfig
from typing import Any, Protocol, runtime_checkable

from alembic import context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext, RevisionStep, StampStep
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from migrations.bookkeeping import MIGRATION_LOCK_KEY, MIGRATION_TABLES
from migrations.database import ensure_database_url
from migrations.database.messages import first_line, report_interrupts_in_one_line
from migrations.database.url import DatabaseUrlError, shown

log = logging.getLogger("alembic.env")

# What upgrade, downgrade and stamp take one revision at a time.
Step = RevisionStep | StampStep

DURATION = re.compile(r"^\d+(ms|s|min|h)?$")
# How often the server checks, during a statement, that the migrator is still there (PostgreSQL 14+).
CLIENT_CHECK = {"client_connection_check_interval": "1s"}


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    return not (type_ == "table" and name in MIGRATION_TABLES)


# What autogenerate compares, offline and online alike.
COMPARISON: dict[str, Any] = {
    "compare_type": True,
    "compare_server_default": True,
    "include_name": include_name,
}


def configure_logging(config: Config) -> None:
    """What a user reads: Alembic's log, each error once, and Ctrl-C as one line."""
    report_interrupts_in_one_line()
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
        # Alembic prints each error as "FAILED: ..." and logs it again; once is enough.
        logging.getLogger("alembic.util.messaging").setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class Settings:
    lock_timeout: str
    statement_timeout: str
    lock_wait: float

    @classmethod
    def from_environment(cls) -> Settings:
        return cls(
            lock_timeout=duration("MIGRATION_LOCK_TIMEOUT", "3s"),
            statement_timeout=duration("MIGRATION_STATEMENT_TIMEOUT", "5min"),
            lock_wait=seconds("MIGRATION_LOCK_WAIT", "120"),
        )

    @property
    def timeouts(self) -> dict[str, str]:
        return {"lock_timeout": self.lock_timeout, "statement_timeout": self.statement_timeout}


def duration(variable: str, default: str) -> str:
    value = os.environ.get(variable, default).strip()
    if not DURATION.match(value):
        raise CommandError(f"{variable}={value!r} is not a duration such as 500ms, 3s or 5min")
    return value


def seconds(variable: str, default: str) -> float:
    value = os.environ.get(variable, default)
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number >= 0):
        raise CommandError(f"{variable}={value!r} is not a number of seconds (0 or more)")
    return number


@contextmanager
def offline_session(settings: Settings) -> Iterator[None]:
    """The timeouts and the advisory lock, as statements of the script a DBA applies."""
    for name, value in settings.timeouts.items():
        context.execute(f"SET {name} = '{value}'")
    context.execute(f"SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")
    yield
    context.execute(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")


@dataclass
class Session:
    """An online migrator's connection, and what this command will do with it."""

    connection: Connection
    one_transaction: bool = False
    moved_by_another_migrator: bool = False


@runtime_checkable
class Connectable(Protocol):
    """An Engine, or what pytest-alembic hands in for one: ``connect()`` gives a Connection."""

    def connect(self) -> AbstractContextManager[Connection]: ...


@contextmanager
def session(config: Config) -> Iterator[Session]:
    """Connect, then (unless the caller holds the transaction) set the timeouts, take the lock, plan.

    A Connection handed in (pytest-alembic's contract), or one already in a transaction, is used
    as it is: its owner runs its transactions, locks and timeouts. An Engine handed in, or none
    (DATABASE_URL or the embedded server), is connected here, and closed, so unlocked, at the end.
    """
    settings = Settings.from_environment()
    handed_in = config.attributes.get("connection")
    with readable_errors(settings):
        if isinstance(handed_in, Connection):
            yield Session(handed_in)
            return
        with connect(handed_in) as connection:
            if connection.in_transaction():
                yield Session(connection)
                return
            for name, value in {**settings.timeouts, **CLIENT_CHECK}.items():
                connection.execute(
                    text("SELECT set_config(:name, :value, false)"), {"name": name, "value": value}
                )
            yield plan(connection, settings)


@contextmanager
def connect(handed_in: object) -> Iterator[Connection]:
    if handed_in is None:
        try:
            handed_in = create_engine(ensure_database_url(), poolclass=NullPool)
        except DatabaseUrlError as error:
            raise CommandError(str(error)) from None
    if not isinstance(handed_in, Connectable):
        raise CommandError(
            f"config.attributes['connection'] holds a {type(handed_in).__name__}: "
            "hand in a SQLAlchemy Engine or Connection"
        )
    where = shown(handed_in.url) if isinstance(handed_in, Engine) else "it"
    with ExitStack() as stack:
        try:
            connection = stack.enter_context(handed_in.connect())
        except DBAPIError as error:
            raise CommandError(f"cannot connect to {where}: {first_line(error.orig)}") from None
        yield connection


def plan(connection: Connection, settings: Settings) -> Session:
    """Take the migration lock; then what this command does, decided where the database was at its start.

    A relative destination (``-1``, ``+1``) counts from where the database was when the command
    started: if another migrator moved it while this one waited, and the destination now
    leads elsewhere, this refuses; if it already leads where the database is, nothing is left.
    """
    context.configure(connection=connection)
    planning = context.get_context()
    started_at = planning.get_current_heads()
    steps = planned_steps(planning, started_at)
    acquire_migration_lock(connection, settings.lock_wait)
    now = planning.get_current_heads()
    if steps is not None and now != started_at:
        if now == end_of(steps, started_at):
            log.info("Another migrator already moved the database to %s; nothing to do.", describe(now))
            return Session(connection, moved_by_another_migrator=True)
        now_steps = planned_steps(planning, now) or []
        if end_of(now_steps, now) != end_of(steps, started_at):
            raise CommandError(
                f"the database moved from {describe(started_at)} to {describe(now)} while this command "
                f"waited for the migration lock, and {planning.opts['destination_rev']} counted from "
                f"{describe(started_at)}; "
                "nothing was changed. Check `alembic current`, then run the command again if you still "
                "mean it"
            )
        steps = now_steps
    connection.commit()  # ends only the transaction the reads above began; the lock is the session's
    downgrading = any(not step.is_upgrade for step in steps or [])
    return Session(connection, one_transaction=downgrading)


def planned_steps(planning: MigrationContext, heads: tuple[str, ...]) -> list[Step] | None:
    """The steps this command takes from `heads`, as Alembic itself resolves its destination.

    None for a command that migrates nothing (current, check, revision): it has no destination.
    """
    if "destination_rev" not in planning.opts:
        return None
    steps_from: Callable[[tuple[str, ...], MigrationContext], Sequence[Step]] = planning.opts["fn"]
    return list(steps_from(heads, planning))


def end_of(steps: Sequence[Step], heads: tuple[str, ...]) -> tuple[str, ...]:
    """Where `steps` leave a database at `heads` (the history is one line: the last step says)."""
    return tuple(steps[-1].to_revisions) if steps else heads


def describe(heads: tuple[str, ...]) -> str:
    return ", ".join(heads) or "base"


def acquire_migration_lock(connection: Connection, wait: float) -> None:
    """Wait, up to `wait` seconds (MIGRATION_LOCK_WAIT), for any other migrator to finish."""
    deadline = time.monotonic() + wait
    try_lock = text("SELECT pg_try_advisory_lock(:key)")
    while not connection.execute(try_lock, {"key": MIGRATION_LOCK_KEY}).scalar_one():
        if time.monotonic() >= deadline:
            raise CommandError(
                f"another migration has held the migration lock for over {wait:g}s "
                "(MIGRATION_LOCK_WAIT); nothing was changed. Wait for it to finish, "
                "or find it in pg_locks (locktype 'advisory')"
            )
        time.sleep(0.05)


@contextmanager
def readable_errors(settings: Settings) -> Iterator[None]:
    """Turn a database error into one line that says what happened and what to do."""
    try:
        yield
    except DBAPIError as error:
        sqlstate = getattr(error.orig, "sqlstate", None)
        if sqlstate == "55P03":
            raise CommandError(
                f"a migration waited longer than lock_timeout ({settings.lock_timeout}) for a lock "
                "another session holds; the database stays at its revision. Retry when that session "
                "ends (see pg_stat_activity), or raise MIGRATION_LOCK_TIMEOUT"
            ) from None
        if sqlstate == "57014":
            raise CommandError(
                f"a migration statement ran longer than statement_timeout ({settings.statement_timeout}) "
                "and was cancelled; the database stays at its revision. Raise MIGRATION_STATEMENT_TIMEOUT"
            ) from None
        raise CommandError(
            f"migration failed, nothing was committed for it: {first_line(error.orig)}"
        ) from None
