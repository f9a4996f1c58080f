"""Alembic's environment: every option here is a deliberate choice (the machinery is in runner.py).

- The URL comes from DATABASE_URL, or the embedded PostgreSQL (migrations/database/).
- A connection handed in through ``config.attributes["connection"]`` (pytest-alembic's
  contract) is used as it is when it is a Connection: its owner runs its transactions,
  locks and timeouts. An Engine is connected and managed here, like DATABASE_URL.
- Runs are serialized by a PostgreSQL advisory lock, taken before alembic_version is
  read, so replicas that all migrate at deploy time cannot interleave.
- Every migration statement runs under ``lock_timeout`` (MIGRATION_LOCK_TIMEOUT, 500ms) and
  ``statement_timeout`` (MIGRATION_STATEMENT_TIMEOUT), so a migration that queues behind a
  long transaction stalls the queries behind it for half a second at most, then gives up; the
  revision rolled back whole, so it is retried (MIGRATION_LOCK_RETRIES), and the last failure
  names the session that held the lock. Concurrent builds and validations, which wait for
  older transactions by design, run under long limits of their own (operations.py).
- Upgrades commit per migration (``transaction_per_migration``): a failure keeps the
  revisions before it. A downgrade is one transaction, whatever form its destination takes
  (``-1``, ``head-2``, ``<rev>-1``, a partial id, ``base``): a revision that refuses to drop
  user data part-way leaves the database exactly where it was. Except what PostgreSQL cannot
  run in a transaction: a revision that builds or drops an index concurrently is a
  transaction of its own, recorded with it, between the atomic runs of the others.
- A relative destination (``downgrade -1``, ``upgrade +1``) counts from the revision the
  database was at when the command started, not from wherever other migrators left it
  while this one waited for the lock: 8 replicas rolling back with ``downgrade -1`` step
  down once, not 8 times.
- A migrator killed mid-run (SIGKILL, OOM) has its server session ended within a second
  (``client_connection_check_interval``): its transaction rolls back and its locks go,
  instead of holding them until ``statement_timeout``.
- A command that migrates refuses a standby (``pg_is_in_recovery()``) before anything, an
  ``upgrade head`` with nothing to do included: migrations run on the primary.
- With MIGRATION_WAIT_FOR_REPLICAS=<seconds>, after each commit the migrator waits, up to
  that bound, until every standby in ``pg_stat_replication`` has replayed it; past it, it
  warns, or fails with MIGRATION_REPLICA_LAG_FAILS=true (``replicas.py``).
- Offline (``--sql``) scripts set the same timeouts and take the same advisory lock.
- Errors reach the user as one ``FAILED:`` line, never with a password in it.
- An unknown ``-x`` key or value is refused, so that a typo never passes for a safety switch
  (``-x allow_data_loss=yes`` is not ``true``); ``-x url=`` is for offline scripts only.
"""

from __future__ import annotations

from typing import Any

from alembic import context

from migrations import runner
from models import metadata

config = context.config
runner.configure_logging(config)
runner.check_x_arguments(context.get_x_argument(as_dictionary=False), offline=context.is_offline_mode())

target_metadata = metadata


def run_migrations_offline() -> None:
    """Write the SQL instead of running it; a DBA applies it with psql."""
    context.configure(
        url=context.get_x_argument(as_dictionary=True).get("url") or "postgresql+psycopg://",
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        transaction_per_migration=True,
        **runner.COMPARISON,
    )
    with runner.offline_session(runner.Settings.from_environment()), context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run them on the database, one migrator at a time, under the timeouts, in batches of steps."""
    with runner.session(config) as session:

        def migrate(**batch: Any) -> None:
            context.configure(
                connection=session.connection, target_metadata=target_metadata, **batch, **runner.COMPARISON
            )
            with context.begin_transaction():
                context.run_migrations()

        session.run(migrate)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
