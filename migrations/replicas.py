"""Hot standbys: waiting for them to replay what the primary committed, and what stalls their replay.

Every commit on the primary reaches each streaming standby as WAL and is replayed there,
usually within milliseconds. Two things make a standby fall behind during a migration:

- a statement that takes ACCESS EXCLUSIVE on a table (most ``ALTER TABLE`` forms, ``DROP``,
  ``TRUNCATE``, ``VACUUM FULL``, a non-concurrent ``REINDEX``): the standby must take the same
  lock to replay it, waits for its own queries on that table, and replays nothing else, in any
  database, meanwhile, for up to ``max_standby_streaming_delay``, after which it cancels them;
- a large data change: the standby applies it at its own pace.

For the migrator (env.py, through runner.py), ``waiting_for_standbys`` makes it wait after each
revision commits until every standby has replayed it, up to MIGRATION_WAIT_FOR_REPLICAS seconds,
then warn, or fail if MIGRATION_REPLICA_LAG_FAILS=true: a deploy must not start code that reads
the new schema from a replica still on the old one.

For the batched backfill and the benchmark:

``wait_for_standbys(primary, bound_seconds, *, lsn=None) -> LagReport``
    Wait until every standby streaming from `primary` has replayed `lsn` (default: all the
    primary has written so far), polling ``pg_stat_replication`` on the primary, for at most
    `bound_seconds`; never raises for lag, the report says who is behind. Call it between
    batches to throttle on replay: each batch then waits until the standbys have replayed the
    previous one. ``LagReport.waited`` is the replay lag of that moment, measured, and honest
    while replay is stalled, when ``pg_stat_replication.replay_lag`` is not (it keeps its last
    value until replay moves). `primary` is a SQLAlchemy ``Connection`` (used as it is, so call
    it between transactions), an ``Engine``, a ``URL`` or a URL string. The role needs
    ``pg_monitor`` (or superuser) to see the standbys' progress, else ``ReplicaVisibilityError``.

``access_exclusive_locks(connection, before) -> list[str]``
    The relations of ``before = relations(connection)`` (taken when the transaction began) on
    which the connection's transaction now holds ACCESS EXCLUSIVE: what each standby must lock
    when it replays the transaction, so what can stall its replay.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from alembic.util import CommandError
from sqlalchemy import URL, Connection, Engine, create_engine, event, text
from sqlalchemy.pool import NullPool

log = logging.getLogger("alembic.env")

STANDBY_REFUSAL = (
    "the database server is a read-only standby in recovery (pg_is_in_recovery()), and migrations "
    "run on the primary: point DATABASE_URL at the primary"
)
VISIBILITY = (
    "pg_stat_replication hides the standbys' progress from this role: grant it pg_monitor "
    "(GRANT pg_monitor TO <role>), or unset MIGRATION_WAIT_FOR_REPLICAS"
)

# One row per physical standby streaming from this server. Base backups in progress (state
# 'backup') and logical subscribers (their slot is logical) replay nothing of ours; neither does
# pg_receivewal (no replay position). Without pg_monitor, state and positions read NULL.
STANDBYS = text(
    """
    SELECT r.application_name, r.state, r.replay_lsn::text,
           greatest(pg_wal_lsn_diff(CAST(:lsn AS pg_lsn), r.replay_lsn), 0)::bigint,
           extract(epoch FROM r.replay_lag)::float8
    FROM pg_stat_replication r
    LEFT JOIN pg_replication_slots s ON s.active_pid = r.pid
    WHERE coalesce(s.slot_type, 'physical') = 'physical'
      AND r.state IS DISTINCT FROM 'backup'
      AND (r.state IS NULL OR r.replay_lsn IS NOT NULL)
    ORDER BY r.application_name, r.pid
    """
)
DISCONNECTED = text(
    "SELECT slot_name FROM pg_replication_slots WHERE slot_type = 'physical' AND NOT active ORDER BY 1"
)


class ReplicaVisibilityError(PermissionError):
    """The role cannot see the standbys' replay positions (it needs pg_monitor)."""


@dataclass(frozen=True)
class Standby:
    """A standby as the primary sees it in pg_stat_replication."""

    name: str  # its application_name (pg_basebackup -R sets it in primary_conninfo)
    state: str
    replay_lsn: str
    bytes_behind: int  # of the position waited for; 0 once replayed
    reported_lag: float | None  # pg_stat_replication.replay_lag in seconds: stale while replay is stalled

    @property
    def replayed(self) -> bool:
        return self.bytes_behind == 0


@dataclass(frozen=True)
class LagReport:
    """Where the standbys were when a wait ended."""

    lsn: str  # the primary's WAL position waited for
    waited: float  # seconds
    standbys: tuple[Standby, ...]
    # Physical replication slots no standby streams from: a standby that is down, which
    # replays everything once it reconnects, and for which the primary keeps the WAL meanwhile.
    disconnected: tuple[str, ...]

    @property
    def behind(self) -> tuple[Standby, ...]:
        return tuple(standby for standby in self.standbys if not standby.replayed)

    @property
    def caught_up(self) -> bool:
        return not self.behind

    def describe(self) -> str:
        """One line: how far behind each late standby is, or who replayed it and how fast."""
        if self.behind:
            return "; ".join(
                f"{s.name} ({s.state}) is {s.bytes_behind} bytes behind, at {s.replay_lsn}"
                for s in self.behind
            )
        if not self.standbys:
            return "no standby streams from this server"
        return f"{', '.join(s.name for s in self.standbys)} replayed {self.lsn} in {self.waited:.3f}s"


Primary = Connection | Engine | URL | str


def wait_for_standbys(primary: Primary, bound_seconds: float, *, lsn: str | None = None) -> LagReport:
    """Wait until every streaming standby has replayed `lsn` (default: all written so far), up to
    `bound_seconds`; the report of where they are. See the module's docstring."""
    with monitoring(primary) as connection:
        started = time.monotonic()
        # pg_current_wal_lsn(): the end of every commit made with synchronous_commit on or
        # local; an asynchronous commit may be written up to wal_writer_delay later.
        target: str = lsn or connection.execute(text("SELECT pg_current_wal_lsn()::text")).scalar_one()
        pause = 0.001
        while True:
            report = lag_report(connection, target, time.monotonic() - started)
            if report.caught_up or report.waited >= bound_seconds:
                return report
            time.sleep(min(pause, max(bound_seconds - report.waited, 0)))
            pause = min(pause * 2, 0.05)  # replay usually takes a few ms: look often at first


def lag_report(connection: Connection, lsn: str, waited: float) -> LagReport:
    rows = connection.execute(STANDBYS, {"lsn": lsn}).all()
    if any(state is None for _, state, *_ in rows):
        raise ReplicaVisibilityError(VISIBILITY)
    standbys = tuple(Standby(*row) for row in rows)
    disconnected = tuple(connection.execute(DISCONNECTED).scalars())
    return LagReport(lsn, waited, standbys, disconnected)


@contextmanager
def monitoring(primary: Primary) -> Iterator[Connection]:
    """`primary` as a Connection: a Connection as it is (its transaction, if this began one, is
    ended); anything else connected here, in autocommit, and closed at the end."""
    if isinstance(primary, Connection):
        was_in_transaction = primary.in_transaction()
        try:
            yield primary
        finally:
            if not was_in_transaction and primary.in_transaction():
                primary.rollback()
        return
    engine = primary if isinstance(primary, Engine) else create_engine(primary, poolclass=NullPool)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            yield connection
    finally:
        if engine is not primary:
            engine.dispose()


@dataclass(frozen=True)
class ReplicaWait:
    """MIGRATION_WAIT_FOR_REPLICAS (seconds; 0: do not wait) and MIGRATION_REPLICA_LAG_FAILS."""

    bound: float = 0
    fail: bool = False


@contextmanager
def waiting_for_standbys(connection: Connection, wait: ReplicaWait) -> Iterator[None]:
    """While the migrator runs on `connection`: after each commit, wait for the standbys.

    Alembic's hooks run inside a revision's transaction, and SQLAlchemy's ``commit`` event
    before the commit itself, so a commit is only noted there; the wait happens when the next
    transaction begins (``begin`` event: nothing of it has run, it holds no lock yet), and
    once at the end. It reads the primary from a connection of its own.
    """
    if not wait.bound:
        yield
        return
    # An asynchronous commit may not yet be in pg_current_wal_lsn(), the position waited for.
    connection.execute(
        text(
            "SELECT set_config('synchronous_commit', 'local', false) "
            "WHERE current_setting('synchronous_commit') = 'off'"
        )
    )
    hidden = connection.execute(
        text("SELECT count(*) FROM pg_stat_replication WHERE state IS NULL")
    ).scalar_one()
    connection.commit()
    if hidden:
        raise CommandError(f"{VISIBILITY}; nothing was changed")
    committed = False
    warned: set[str] = set()
    with monitoring(connection.engine) as monitor:

        def note_commit(_: Connection) -> None:
            nonlocal committed
            committed = True

        def wait_if_committed(_: Connection | None = None) -> None:
            nonlocal committed
            if committed:
                committed = False
                judge(wait_for_standbys(monitor, wait.bound), wait, warned)

        event.listen(connection, "commit", note_commit)
        event.listen(connection, "begin", wait_if_committed)
        try:
            yield
            wait_if_committed()
        finally:
            event.remove(connection, "commit", note_commit)
            event.remove(connection, "begin", wait_if_committed)


def judge(report: LagReport, wait: ReplicaWait, warned: set[str]) -> None:
    """Say how the wait went: INFO when every standby replayed the commit; past the bound, warn or fail."""
    for slot in report.disconnected:
        if slot not in warned:
            warned.add(slot)
            log.warning(
                "replication slot %s has no standby streaming from it: that standby replays this "
                "migration only once it reconnects, and reads there see the old schema until then",
                slot,
            )
    if report.caught_up:
        log.info("Standbys caught up: %s.", report.describe())
        return
    late = ", ".join(standby.name for standby in report.behind)
    message = (
        f"{late} had not replayed the migration's last commit ({report.lsn}) after {wait.bound:g}s "
        f"(MIGRATION_WAIT_FOR_REPLICAS), so reads there still see the schema before it: {report.describe()}"
    )
    if wait.fail:
        raise CommandError(
            f"{message}. Stopped (MIGRATION_REPLICA_LAG_FAILS=true): the primary keeps the revisions "
            "committed so far (alembic current says which); run the command again once the standbys "
            "catch up (see pg_stat_replication)"
        )
    log.warning("%s", message)


def relations(connection: Connection) -> dict[int, str]:
    """Every relation of the current database, by oid: what existed when the transaction began."""
    rows = connection.execute(text("SELECT oid::bigint, oid::regclass::text FROM pg_class"))
    return {oid: name for oid, name in rows}


def access_exclusive_locks(connection: Connection, before: Mapping[int, str]) -> list[str]:
    """The relations of `before` on which the connection's transaction holds ACCESS EXCLUSIVE, sorted.

    Call it inside the transaction, after the statements (for a revision: Alembic's
    ``on_version_apply`` runs before its commit); take `before` with ``relations`` when the
    transaction begins. Relations the transaction created are left out: a new table is
    locked too, but no standby query can be using it. A dropped one keeps its name from `before`.
    """
    oids = connection.execute(
        text(
            "SELECT relation::bigint FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'relation' "
            "AND mode = 'AccessExclusiveLock' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    ).scalars()
    return sorted(before[oid] for oid in oids if oid in before)
