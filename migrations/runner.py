"""The machinery env.py runs migrations with; env.py's docstring says why each piece exists.

- ``Settings``: the timeouts and the lock wait, read from the environment once and checked.
- ``check_x_arguments``: the ``-x`` options this project reads; any other is refused.
- ``offline_session``: the same timeouts and advisory lock, written into a ``--sql`` script.
- ``session``: an online migrator's connection: connected with readable errors, the server's
  notices and warnings logged, under the timeouts, holding the advisory lock, with the plan of
  what this command will do (and a warning when it stamps a database without tables).
- ``Session.run``: runs the migrations, retrying a revision that waited past ``lock_timeout``.
- ``readable_errors``: a database error as one ``FAILED:`` line.
"""

from __future__ import annotations

import ast
import inspect
import logging
import math
import os
import re
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from logging.config import fileConfig
from typing import Any, Protocol, TypeVar, runtime_checkable

import psycopg
from alembic import context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext, RevisionStep, StampStep
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from migrations import replicas
from migrations.bookkeeping import MIGRATION_LOCK_KEY, MIGRATION_TABLES
from migrations.database import ensure_database_url
from migrations.database.messages import first_line
from migrations.database.url import DatabaseUrlError

log = logging.getLogger("alembic.env")

# What upgrade, downgrade and stamp take one revision at a time.
Step = RevisionStep | StampStep

DURATION = re.compile(r"^\d+(ms|s|min|h)?$")
LOCK_NOT_AVAILABLE = "55P03"  # the SQLSTATE of a lock_timeout
# Set in config.attributes when the caller runs the migration inside its own transaction.
CALLER_TRANSACTION = "migrations.caller_transaction"
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
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
        # Alembic prints each error as "FAILED: ..." and logs it again; once is enough.
        logging.getLogger("alembic.util.messaging").setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class Settings:
    """What the environment asks of a migrator; each value is checked when read."""

    # A statement queued behind another session's lock stalls every query queued behind it: give up
    # soon (pgroll's default), and retry, since a revision is atomic.
    lock_timeout: str
    statement_timeout: str
    lock_retries: int
    # Concurrent index builds and validations wait for older transactions, which counts as a lock
    # wait, and scan the table: they get long limits of their own.
    slow_lock_timeout: str
    slow_statement_timeout: str
    lock_wait: float

    @classmethod
    def from_environment(cls) -> Settings:
        return cls(
            lock_timeout=duration("MIGRATION_LOCK_TIMEOUT", "500ms"),
            statement_timeout=duration("MIGRATION_STATEMENT_TIMEOUT", "5min"),
            lock_retries=count("MIGRATION_LOCK_RETRIES", "3"),
            slow_lock_timeout=duration("MIGRATION_SLOW_LOCK_TIMEOUT", "10min"),
            slow_statement_timeout=duration("MIGRATION_SLOW_STATEMENT_TIMEOUT", "2h"),
            lock_wait=seconds("MIGRATION_LOCK_WAIT", "120"),
        )

    @property
    def timeouts(self) -> dict[str, str]:
        return {"lock_timeout": self.lock_timeout, "statement_timeout": self.statement_timeout}

    @property
    def slow_timeouts(self) -> dict[str, str]:
        return {"lock_timeout": self.slow_lock_timeout, "statement_timeout": self.slow_statement_timeout}


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


def count(variable: str, default: str) -> int:
    value = os.environ.get(variable, default).strip()
    if not value.isdigit():
        raise CommandError(f"{variable}={value!r} is not a whole number (0 or more)")
    return int(value)


# The -x arguments this project reads; any other is refused, so that a typo never passes for a switch.
X_ARGUMENTS = "-x allow_data_loss=true or -x allow_data_loss=false, and -x url=... in an offline (--sql) run"


def check_x_arguments(arguments: Sequence[str], offline: bool) -> None:
    """Refuse an unknown -x key or value in one line; never repeat a value that may hold a password."""
    seen: set[str] = set()
    for argument in arguments:
        key, _, value = argument.partition("=")
        if key in seen:
            raise CommandError(f"-x {key} is given twice; give it once")
        seen.add(key)
        if key == "allow_data_loss" and value not in ("true", "false"):
            raise CommandError(
                f"-x allow_data_loss={value!r} is neither true nor false; this project reads {X_ARGUMENTS}"
            )
        if key == "url" and not offline:
            raise CommandError(
                "-x url=... names the database of an offline (--sql) script only; online, the database "
                "is DATABASE_URL's (the embedded one when it is unset)"
            )
        if key not in ("allow_data_loss", "url"):
            raise CommandError(f"-x {key}=... is not an option of this project; it reads {X_ARGUMENTS}")


@contextmanager
def offline_session(settings: Settings) -> Iterator[None]:
    """The timeouts and the advisory lock, as statements of the script a DBA applies."""
    for name, value in settings.timeouts.items():
        context.execute(f"SET {name} = '{value}'")
    context.execute(f"SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")
    yield
    context.execute(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")


# Runs the migrations with these options for EnvironmentContext.configure: the steps of a batch
# ("fn"), and whether they take one transaction together ("transaction_per_migration").
Migrate = Callable[..., None]


@dataclass
class Session:
    """An online migrator's connection, and the steps this command takes with it."""

    connection: Connection
    settings: Settings
    # The steps planned when the command started; None when the command has no destination (current,
    # check) or the caller runs its own transaction.
    planned: list[Step] | None = None
    backend_pid: int = 0

    def run(self, migrate: Migrate) -> None:
        """Take the steps not yet taken, in batches; retry a batch that waited past lock_timeout.

        A batch that hits lock_timeout rolled back whole, so it is taken again from where the
        database is: up to MIGRATION_LOCK_RETRIES more times, waiting 1, 2, 4, ... s in between,
        each retry logged; then the command fails, naming the session that held the lock.
        """
        if self.planned is None:
            migrate(transaction_per_migration=True)
            return
        retries = self.settings.lock_retries
        with BlockerWatch(self.connection.engine, self.backend_pid) as blockers:
            for retry in range(retries + 1):
                try:
                    for steps, one_transaction in self.batches():
                        migrate(
                            fn=lambda heads, migration, steps=steps: steps,
                            transaction_per_migration=not one_transaction,
                        )
                    return
                except DBAPIError as error:
                    if getattr(error.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                        raise
                    if self.connection.in_transaction():
                        self.connection.rollback()
                    if retry == retries:
                        raise CommandError(
                            lock_timeout_message(self.settings, attempts=retry + 1, held_by=blockers.seen)
                        ) from None
                wait = 2.0**retry
                log.warning(
                    "A statement waited longer than lock_timeout (%s) for a lock%s; retrying in %gs "
                    "(retry %d of %d, MIGRATION_LOCK_RETRIES)",
                    self.settings.lock_timeout,
                    f", held by {blockers.seen}" if blockers.seen else "",
                    wait,
                    retry + 1,
                    retries,
                )
                time.sleep(wait)
                apply_timeouts(self.connection, self.settings)

    def batches(self) -> Iterator[tuple[list[Step], bool]]:
        """The planned steps not taken yet, from where the database is now, in the batches to take them.

        Upgrades: one batch, a transaction per revision. Downgrades: one transaction for each run
        of revisions between those that commit on their own (a concurrent index build or drop
        cannot run in a transaction), each of which is a batch of its own, so that its revision
        is recorded in the same transaction as what follows its concurrent statement.
        """
        assert self.planned is not None
        now = MigrationContext.configure(self.connection).get_current_heads()
        self.connection.rollback()  # a read: no commit for the replica wait to wait for
        remaining = next(
            (self.planned[index:] for index, step in enumerate(self.planned) if step.from_revisions == now),
            [],
        )
        if not any(not step.is_upgrade for step in remaining):
            if remaining:
                yield remaining, False
            return
        batch: list[Step] = []
        for step in remaining:
            if isinstance(step, RevisionStep) and commits_on_its_own(step):
                if batch:
                    yield batch, True
                batch = []
                yield [step], False
            else:
                batch.append(step)
        if batch:
            yield batch, True


# What commits the transaction so far when a revision calls it: Alembic's autocommit_block, and
# the helpers in migrations/operations.py that use it (registered by @commits_on_its_own).
COMMITTING_CALLS = {"autocommit_block"}
Function = TypeVar("Function", bound=Callable[..., object])


def commits_on_its_own(step: RevisionStep) -> bool:
    """Whether this step's function calls anything that commits (read from its source)."""
    function = step.revision.module.upgrade if step.is_upgrade else step.revision.module.downgrade
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    called = {
        node.func.id if isinstance(node.func, ast.Name) else node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute)
    }
    return bool(called & COMMITTING_CALLS)


def committing(function: Function) -> Function:
    """Mark a helper that commits the transaction so far (it runs an autocommit block)."""
    COMMITTING_CALLS.add(function.__name__)
    return function


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
    replica_wait = replica_wait_from_environment()
    handed_in = config.attributes.get("connection")
    with readable_errors(settings):
        if isinstance(handed_in, Connection):
            config.attributes[CALLER_TRANSACTION] = True
            yield Session(handed_in, settings)
            return
        with connect(handed_in) as connection:
            if connection.in_transaction():
                config.attributes[CALLER_TRANSACTION] = True
                yield Session(connection, settings)
                return
            apply_timeouts(connection, settings)
            planned = plan(connection, settings)
            wait = replica_wait if planned.planned is not None else replicas.ReplicaWait()
            with replicas.waiting_for_standbys(connection, wait):
                yield planned


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
    where = handed_in.url.render_as_string(hide_password=True) if isinstance(handed_in, Engine) else "it"
    with ExitStack() as stack:
        try:
            connection = stack.enter_context(handed_in.connect())
        except DBAPIError as error:
            raise CommandError(f"cannot connect to {where}: {first_line(error.orig)}") from None
        stack.enter_context(server_messages_logged(connection))
        yield connection


# A revision's RAISE NOTICE or WARNING, at the level Python's logging calls it; DEBUG and LOG reach
# the migrator only when client_min_messages asks for them, so they are shown like a NOTICE.
SERVER_MESSAGE_LEVELS = {"WARNING": logging.WARNING, "NOTICE": logging.INFO, "INFO": logging.INFO}


@contextmanager
def server_messages_logged(connection: Connection) -> Iterator[None]:
    """Log what the server says along the way, as psql prints it, instead of dropping it (psycopg's default).

    A revision that keeps rows it cannot be sure are its own says so in a WARNING.
    """
    driver = connection.connection.driver_connection
    if not isinstance(driver, psycopg.Connection):
        yield
        return
    driver.add_notice_handler(log_server_message)
    try:
        yield
    finally:
        driver.remove_notice_handler(log_server_message)


def log_server_message(diagnostic: psycopg.errors.Diagnostic) -> None:
    level = SERVER_MESSAGE_LEVELS.get(diagnostic.severity_nonlocalized or "", logging.INFO)
    log.log(level, "%s", diagnostic.message_primary)


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
    if steps is not None:
        refuse_a_standby(connection)
    # No transaction stays open while waiting: a concurrent index build by the migrator that holds
    # the lock waits for every open transaction in the database to end, ours included.
    connection.commit()
    acquire_migration_lock(connection, settings.lock_wait)
    now = planning.get_current_heads()
    if steps is not None and now != started_at:
        if now == end_of(steps, started_at):
            log.info("Another migrator already moved the database to %s; nothing to do.", describe(now))
            steps = []
        else:
            now_steps = planned_steps(planning, now) or []
            if end_of(now_steps, now) != end_of(steps, started_at):
                raise CommandError(
                    f"the database moved from {describe(started_at)} to {describe(now)} while this "
                    f"command waited for the migration lock, and {planning.opts['destination_rev']} "
                    f"counted from {describe(started_at)}; nothing was changed. Check `alembic current`, "
                    "then run the command again if you still mean it"
                )
            steps = now_steps
    backend_pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    warn_when_stamping_a_database_without_tables(connection, steps or [])
    connection.commit()  # ends only the transaction the reads above began; the lock is the session's
    return Session(connection, settings, planned=steps, backend_pid=backend_pid)


def planned_steps(planning: MigrationContext, heads: tuple[str, ...]) -> list[Step] | None:
    """The steps this command takes from `heads`, as Alembic itself resolves its destination.

    None for a command that migrates nothing (current, check, revision): it has no destination.
    """
    if "destination_rev" not in planning.opts:
        return None
    steps_from: Callable[[tuple[str, ...], MigrationContext], Sequence[Step]] = planning.opts["fn"]
    return list(steps_from(heads, planning))


def refuse_a_standby(connection: Connection) -> None:
    """A command that migrates runs on the primary. On a standby, its first write would fail, and
    with nothing to do it would report success for a server it can never change."""
    if connection.execute(text("SELECT pg_is_in_recovery()")).scalar_one():
        raise CommandError(f"{replicas.STANDBY_REFUSAL}; nothing was changed")


def replica_wait_from_environment() -> replicas.ReplicaWait:
    """MIGRATION_WAIT_FOR_REPLICAS=<seconds> (default 0: no wait), MIGRATION_REPLICA_LAG_FAILS=true|false."""
    fails = os.environ.get("MIGRATION_REPLICA_LAG_FAILS", "false")
    if fails.strip().lower() not in ("true", "false"):
        raise CommandError(f"MIGRATION_REPLICA_LAG_FAILS={fails!r} is neither true nor false")
    return replicas.ReplicaWait(seconds("MIGRATION_WAIT_FOR_REPLICAS", "0"), fails.strip().lower() == "true")


def end_of(steps: Sequence[Step], heads: tuple[str, ...]) -> tuple[str, ...]:
    """Where `steps` leave a database at `heads` (the history is one line: the last step says)."""
    return tuple(steps[-1].to_revisions) if steps else heads


def describe(heads: tuple[str, ...]) -> str:
    return ", ".join(heads) or "base"


def warn_when_stamping_a_database_without_tables(connection: Connection, steps: Sequence[Step]) -> None:
    """``stamp`` records revisions as applied without running them: on a database with no tables, say so."""
    stamping_up = bool(steps) and all(isinstance(step, StampStep) and step.is_upgrade for step in steps)
    if not stamping_up:
        return
    tables = connection.execute(
        text(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename <> ALL(:ours)"
        ),
        {"ours": sorted(MIGRATION_TABLES)},
    ).scalar_one()
    if tables == 0:
        log.warning(
            "stamp records %s as applied without running any migration, and this database has no tables: "
            "it still has none. To build the schema instead: alembic stamp base, then alembic upgrade head",
            describe(end_of(steps, ())),
        )


def acquire_migration_lock(connection: Connection, wait: float) -> None:
    """Wait, up to `wait` seconds (MIGRATION_LOCK_WAIT), for any other migrator to finish."""
    deadline = time.monotonic() + wait
    try_lock = text("SELECT pg_try_advisory_lock(:key)")
    # What a DBA reading pg_stat_activity sees of this session.
    name = text("SELECT set_config('application_name', :name, false)")
    connection.execute(name, {"name": WAITING_FOR_THE_LOCK})
    while not connection.execute(try_lock, {"key": MIGRATION_LOCK_KEY}).scalar_one():
        connection.commit()  # the advisory lock is the session's; the transaction must not stay open
        if time.monotonic() >= deadline:
            raise CommandError(
                f"another migration has held the migration lock for over {wait:g}s "
                "(MIGRATION_LOCK_WAIT); nothing was changed. Wait for it to finish, "
                "or find it in pg_locks (locktype 'advisory')"
            )
        time.sleep(0.05)
    connection.execute(name, {"name": MIGRATING})


WAITING_FOR_THE_LOCK = "alembic: waiting for the migration lock"
MIGRATING = "alembic: migrating"


class BlockerWatch:
    """Who holds the lock the migrator waits for: another connection asks every 100 ms, in a thread.

    After a lock timeout the waiting statement is gone, and with it the answer to whose lock it
    waited for; so it is asked while the migrator runs, and the last answer kept.
    """

    QUERY = text(
        "SELECT format('pid %s, in a transaction for %ss: %s', pid, "
        "round(extract(epoch FROM clock_timestamp() - xact_start)), "
        "left(regexp_replace(query, '\\s+', ' ', 'g'), 80)) "
        "FROM pg_stat_activity WHERE pid = ANY (pg_blocking_pids(:pid)) ORDER BY xact_start LIMIT 3"
    )

    def __init__(self, engine: Engine, pid: int) -> None:
        self.engine, self.pid = engine, pid
        self.seen = ""
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.watch, name="blocker-watch", daemon=True)

    def __enter__(self) -> BlockerWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join()

    def watch(self) -> None:
        try:
            with self.engine.connect() as connection:
                while not self.stopped.wait(0.1):
                    found = connection.execute(self.QUERY, {"pid": self.pid}).scalars().all()
                    connection.rollback()
                    if found:
                        self.seen = "; ".join(found)
        except DBAPIError as error:  # the migration goes on without the watch; only its message is poorer
            log.debug("not watching for blocking sessions: %s", first_line(error.orig))


def lock_timeout_message(settings: Settings, attempts: int, held_by: str) -> str:
    tries = "" if attempts == 1 else f", {attempts} times (MIGRATION_LOCK_RETRIES={attempts - 1})"
    holder = f"; the lock was held by {held_by}" if held_by else ""
    return (
        f"a migration waited longer than lock_timeout ({settings.lock_timeout}) for a lock another session "
        f"holds{tries}; the database stays at its revision{holder}. Retry when that session ends "
        "(see pg_stat_activity), or raise MIGRATION_LOCK_TIMEOUT"
    )


def apply_timeouts(connection: Connection, settings: Settings) -> None:
    for name, value in {**settings.timeouts, **CLIENT_CHECK}.items():
        connection.execute(text("SELECT set_config(:name, :value, false)"), {"name": name, "value": value})
    connection.commit()


@contextmanager
def readable_errors(settings: Settings) -> Iterator[None]:
    """Turn a database error into one line that says what happened and what to do."""
    try:
        yield
    except DBAPIError as error:
        sqlstate = getattr(error.orig, "sqlstate", None)
        if sqlstate == LOCK_NOT_AVAILABLE:
            raise CommandError(lock_timeout_message(settings, attempts=1, held_by="")) from None
        if sqlstate == "57014":
            raise CommandError(
                f"a migration statement ran longer than statement_timeout ({settings.statement_timeout}) "
                "and was cancelled; the database stays at its revision. Raise MIGRATION_STATEMENT_TIMEOUT"
            ) from None
        if sqlstate == "25006":
            raise CommandError(
                f"the database refused a write, it is read-only ({first_line(error.orig)}): "
                f"{replicas.STANDBY_REFUSAL} (or, on the primary, turn default_transaction_read_only "
                "off); nothing was committed for it"
            ) from None
        raise CommandError(
            f"migration failed, nothing was committed for it: {first_line(error.orig)}"
        ) from None
