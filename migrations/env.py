"""Alembic's environment: every option here is a deliberate choice.

- The URL comes from DATABASE_URL, or the embedded PostgreSQL (models/database.py).
- A connection handed in through ``config.attributes["connection"]`` (pytest-alembic's
  contract) is used as it is when it is a Connection: its owner runs its transactions,
  locks and timeouts. Anything else (an Engine) is connected and managed here.
- Runs are serialized by a PostgreSQL advisory lock, taken before alembic_version is
  read, so replicas that all migrate at deploy time cannot interleave.
- Every migration statement runs under ``lock_timeout`` and ``statement_timeout``
  (MIGRATION_LOCK_TIMEOUT, MIGRATION_STATEMENT_TIMEOUT), so a migration that queues
  behind a long transaction gives up instead of stalling every query behind it.
- Upgrades commit per migration (``transaction_per_migration``): a failure keeps the
  revisions before it. A downgrade is one transaction: a revision that refuses to drop
  user data part-way leaves the database exactly where it was.
- A relative destination (``downgrade -1``, ``upgrade +1``) counts from the revision the
  database was at when the command started, not from wherever other migrators left it
  while this one waited for the lock: 8 replicas rolling back with ``downgrade -1`` step
  down once, not 8 times.
- A migrator killed mid-run (SIGKILL, OOM) has its server session ended within a second
  (``client_connection_check_interval``): its transaction rolls back and its locks go,
  instead of holding them until ``statement_timeout``.
- Errors reach the user as one ``FAILED:`` line, never with a password in it.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from logging.config import fileConfig
from typing import Any

from alembic import context
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import URL, Connection, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from migrations.bookkeeping import MIGRATION_TABLES
from models import Base
from models.database import DatabaseUrlError, database_url

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)
    # Alembic prints each error as "FAILED: ..." and logs it again; once is enough.
    logging.getLogger("alembic.util.messaging").setLevel(logging.CRITICAL)
log = logging.getLogger("alembic.env")

target_metadata = Base.metadata


# One key for every migrator of this schema: the bytes of "migrate!" as a bigint.
MIGRATION_LOCK_KEY = int.from_bytes(b"migrate!", "big")
DURATION = re.compile(r"^\d+(ms|s|min|h)?$")
RELATIVE = re.compile(r"^[+-]\d+$")
# How often the server checks, during a statement, that the migrator is still there (PostgreSQL 14+).
CLIENT_CHECK = {"client_connection_check_interval": "1s"}


def duration_setting(variable: str, default: str) -> str:
    value = os.environ.get(variable, default).strip()
    if not DURATION.match(value):
        raise CommandError(f"{variable}={value!r} is not a duration such as 500ms, 3s or 5min")
    return value


def lock_wait_seconds() -> float:
    value = os.environ.get("MIGRATION_LOCK_WAIT", "120")
    try:
        return float(value)
    except ValueError:
        raise CommandError(f"MIGRATION_LOCK_WAIT={value!r} is not a number of seconds") from None


def timeouts() -> dict[str, str]:
    return {
        "lock_timeout": duration_setting("MIGRATION_LOCK_TIMEOUT", "3s"),
        "statement_timeout": duration_setting("MIGRATION_STATEMENT_TIMEOUT", "5min"),
    }


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    return not (type_ == "table" and name in MIGRATION_TABLES)


def configure(**options: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
        include_name=include_name,
        transaction_per_migration=True,
        **options,
    )


def run_migrations_offline() -> None:
    """Write SQL instead of running it; a DBA applies it with psql."""
    url = context.get_x_argument(as_dictionary=True).get("url")
    configure(
        url=url or "postgresql+psycopg://",
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    for name, value in timeouts().items():
        context.execute(f"SET {name} = '{value}'")
    context.execute(f"SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")
    with context.begin_transaction():
        context.run_migrations()
    context.execute(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")


def run_migrations_online() -> None:
    handed_in = config.attributes.get("connection")
    with readable_errors(), connect(handed_in) as connection:
        if isinstance(handed_in, Connection) or connection.in_transaction():
            # The caller's connection: its owner runs its transactions, locks and timeouts.
            configure(connection=connection)
            with context.begin_transaction():
                context.run_migrations()
            return
        for name, value in {**timeouts(), **CLIENT_CHECK}.items():
            connection.execute(
                text("SELECT set_config(:name, :value, false)"), {"name": name, "value": value}
            )
        relative = relative_destination()
        started_at = current_heads(connection) if relative else ()
        acquire_migration_lock(connection)
        if relative and already_moved(connection, started_at, relative):
            return
        downgrading = is_downgrade(connection)
        connection.commit()  # ends only the transaction the lines above began
        if downgrading:
            with connection.begin():
                configure(connection=connection)
                context.run_migrations()
        else:
            configure(connection=connection)
            with context.begin_transaction():
                context.run_migrations()


@contextmanager
def connect(handed_in: object) -> Iterator[Connection]:
    """The handed-in Connection as it is; else a new connection, closed (and so unlocked) at the end."""
    if isinstance(handed_in, Connection):
        yield handed_in
        return
    if handed_in is None:
        try:
            url: URL = database_url()
        except DatabaseUrlError as error:
            raise CommandError(str(error)) from None
        handed_in = create_engine(url, poolclass=NullPool)
    connect_method = getattr(handed_in, "connect", None)
    if connect_method is None:
        raise CommandError(f"config.attributes['connection'] holds {type(handed_in).__name__}, not an Engine")
    target = getattr(handed_in, "url", None)
    where = target.render_as_string(hide_password=True) if isinstance(target, URL) else "the database"
    with ExitStack() as stack:
        try:
            connection: Connection = stack.enter_context(connect_method())
        except DBAPIError as error:
            raise CommandError(f"cannot connect to {where}: {first_line(error.orig)}") from None
        yield connection


def acquire_migration_lock(connection: Connection) -> None:
    """Wait, up to MIGRATION_LOCK_WAIT seconds, for any other migrator to finish."""
    wait = lock_wait_seconds()
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


def relative_destination() -> str | None:
    try:
        destination = context.get_revision_argument()
    except KeyError:
        return None
    return destination if isinstance(destination, str) and RELATIVE.match(destination) else None


def current_heads(connection: Connection) -> tuple[str, ...]:
    return MigrationContext.configure(connection).get_current_heads()


def already_moved(connection: Connection, started_at: tuple[str, ...], relative: str) -> bool:
    """True when another migrator, while this one waited, took the database where `relative` leads.

    Raises when it went anywhere else: `relative` no longer says where to go.
    """
    now = current_heads(connection)
    if now == started_at:
        return False
    # A linear history, base first: `relative` counts steps along it from `started_at`.
    scripts = reversed(list(ScriptDirectory.from_config(config).walk_revisions()))
    history: list[tuple[str, ...]] = [(), *((script.revision,) for script in scripts)]
    steps = history.index(started_at) + int(relative) if started_at in history else -1
    if not 0 <= steps < len(history) or now != history[steps]:
        raise CommandError(
            f"the database moved from {describe(started_at)} to {describe(now)} while this command "
            f"waited for the migration lock, and {relative} counted from {describe(started_at)}; "
            "nothing was changed. Check `alembic current`, then run the command again if you still mean it"
        )
    log.info("Another migrator already moved the database to %s; nothing to do.", describe(now))
    return True


def describe(heads: tuple[str, ...]) -> str:
    return ", ".join(heads) or "base"


def is_downgrade(connection: Connection) -> bool:
    try:
        destination = context.get_revision_argument()  # None means base
    except KeyError:  # revision, check and current migrate nothing: they have no destination
        return False
    if destination is None:
        return True
    if isinstance(destination, tuple):
        return False
    if destination.startswith("-"):
        return True
    heads = MigrationContext.configure(connection).get_current_heads()
    script = ScriptDirectory.from_config(config)
    try:
        target = script.get_revision(destination)
    except Exception:  # noqa: BLE001 - alembic itself reports an unknown revision
        return False
    if target is None:
        return True
    for head in heads:
        try:
            below = {rev.revision for rev in script.iterate_revisions(head, "base")}
        except Exception:  # noqa: BLE001 - alembic itself reports an unknown current revision
            return False
        if target.revision != head and target.revision in below:
            return True
    return False


@contextmanager
def readable_errors() -> Iterator[None]:
    """Turn a database error into one line that says what happened and what to do."""
    try:
        yield
    except DBAPIError as error:
        sqlstate = getattr(error.orig, "sqlstate", None)
        limits = timeouts()
        if sqlstate == "55P03":
            raise CommandError(
                f"a migration waited longer than lock_timeout ({limits['lock_timeout']}) for a lock "
                "another session holds; the database stays at its revision. Retry when that session "
                "ends (see pg_stat_activity), or raise MIGRATION_LOCK_TIMEOUT"
            ) from None
        if sqlstate == "57014":
            raise CommandError(
                f"a migration statement ran longer than statement_timeout ({limits['statement_timeout']}) "
                "and was cancelled; the database stays at its revision. Raise MIGRATION_STATEMENT_TIMEOUT"
            ) from None
        raise CommandError(
            f"migration failed, nothing was committed for it: {first_line(error.orig)}"
        ) from None


def first_line(error: BaseException | None) -> str:
    diag = getattr(error, "diag", None)
    message = getattr(diag, "message_primary", None) or str(error)
    return message.strip().splitlines()[0] if message.strip() else type(error).__name__


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
