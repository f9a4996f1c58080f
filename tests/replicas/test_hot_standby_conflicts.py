"""Hot-standby conflicts: an ACCESS EXCLUSIVE lock replayed while a standby query holds the table.

The standby must take the primary's lock to replay past it. While one of its own queries reads
that table, replay of the whole standby, every database, waits up to
max_standby_streaming_delay, then cancels the query (SQLSTATE 40001) and goes on.
"""

from __future__ import annotations

import threading
import time

import psycopg
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from migrations.database.url import conninfo
from migrations.replicas import access_exclusive_locks, relations, wait_for_standbys
from tests.helpers.replication import Replicated
from tests.helpers.types import AddStandby, MakeReplicated

DELAY = 1.0  # max_standby_streaming_delay, seconds: small, for a fast test


class StandbyReader(threading.Thread):
    """A long read on the standby: a transaction that read `table`, then sleeps in a statement."""

    def __init__(self, standby: str, table: str) -> None:
        super().__init__(daemon=True)
        self.standby, self.table = standby, table
        self.reading = threading.Event()
        self.error: psycopg.Error | None = None

    def run(self) -> None:
        with psycopg.connect(self.standby) as connection:
            connection.execute(f"SELECT count(*) FROM {self.table}")  # holds ACCESS SHARE until it ends
            self.reading.set()
            try:
                connection.execute("SELECT pg_sleep(60)")
            except psycopg.Error as error:
                self.error = error


def test_a_long_standby_read_stalls_replay_of_every_database_until_max_standby_streaming_delay(
    make_replicated: MakeReplicated, add_standby: AddStandby
) -> None:
    migrated, elsewhere = make_replicated(), make_replicated()
    busy = add_standby({"max_standby_streaming_delay": f"'{DELAY:g}s'", "hot_standby_feedback": "off"})
    with psycopg.connect(conninfo(migrated.primary), autocommit=True) as primary:
        primary.execute("CREATE TABLE busy AS SELECT generate_series(1, 1000) AS id")
    with psycopg.connect(conninfo(elsewhere.primary), autocommit=True) as primary:
        primary.execute("CREATE TABLE other (id int)")
    migrated.cluster.wait_for_replay()
    reader = StandbyReader(conninfo(migrated.on(busy)), "busy")
    reader.start()
    assert reader.reading.wait(30)

    engine = create_engine(migrated.primary, poolclass=NullPool)
    with engine.connect() as primary:
        before = relations(primary)
        primary.execute(text("ALTER TABLE busy ADD COLUMN added int"))  # milliseconds on the primary
        assert access_exclusive_locks(primary, before) == ["busy"]
        primary.commit()
    committed = time.monotonic()
    engine.dispose()
    with psycopg.connect(conninfo(elsewhere.primary), autocommit=True) as primary:
        primary.execute("INSERT INTO other VALUES (1)")  # another database, no lock in common

    with psycopg.connect(conninfo(elsewhere.on(busy)), autocommit=True) as standby:
        while standby.execute("SELECT count(*) FROM other").fetchone() != (1,):
            assert time.monotonic() - committed < 30, "replay never resumed"
            time.sleep(0.01)
    frozen = time.monotonic() - committed
    reader.join(30)

    assert frozen >= DELAY * 0.9, f"the other database's row arrived after {frozen:.3f}s"
    assert reader.error is not None
    assert reader.error.sqlstate == "40001"
    assert "conflict with recovery" in str(reader.error)


def test_a_stalled_replay_is_measured_by_wait_for_standbys_while_pg_stat_replication_under_reports_it(
    replicated: Replicated, add_standby: AddStandby
) -> None:
    busy = add_standby({"max_standby_streaming_delay": f"'{DELAY:g}s'"})
    with psycopg.connect(conninfo(replicated.primary), autocommit=True) as primary:
        primary.execute("CREATE TABLE busy (id int)")
    replicated.cluster.wait_for_replay()
    reader = StandbyReader(conninfo(replicated.on(busy)), "busy")
    reader.start()
    assert reader.reading.wait(30)

    with psycopg.connect(conninfo(replicated.primary), autocommit=True) as primary:
        primary.execute("ALTER TABLE busy ADD COLUMN added int")
    primary_url = replicated.cluster.primary.url()
    stalled = wait_for_standbys(primary_url, DELAY / 2)  # half-way through the stall
    measured = wait_for_standbys(primary_url, 30, lsn=stalled.lsn)
    reader.join(30)

    (late,) = stalled.behind
    assert late.name == busy.name
    assert (late.reported_lag or 0) < stalled.waited  # stale: the value from before the stall
    assert measured.caught_up
    # Replay stalled most of the delay (the grace period counts from when the WAL arrived, a little
    # before the ALTER returned); without a stall both waits take milliseconds.
    assert stalled.waited + measured.waited >= DELAY * 0.6


def test_access_exclusive_locks_names_the_existing_relations_a_transaction_locks_so_and_no_others(
    replicated: Replicated,
) -> None:
    engine = create_engine(replicated.primary, poolclass=NullPool)
    with engine.begin() as primary:
        primary.execute(text("CREATE TABLE altered (id int PRIMARY KEY)"))
        primary.execute(text("CREATE TABLE dropped (id int)"))
        primary.execute(text("CREATE TABLE read_and_written (id int)"))
    with engine.connect() as primary:
        before = relations(primary)
        primary.execute(text("INSERT INTO read_and_written SELECT count(*) FROM altered"))  # row locks only
        primary.execute(text("CREATE INDEX ON read_and_written (id)"))  # SHARE: blocks writes, not reads
        primary.execute(text("CREATE TABLE created (id int PRIMARY KEY)"))  # new: no standby query can use it
        assert access_exclusive_locks(primary, before) == []

        primary.execute(text("ALTER TABLE altered ADD COLUMN note text"))
        primary.execute(text("DROP TABLE dropped"))
        assert access_exclusive_locks(primary, before) == ["altered", "dropped"]
        primary.rollback()
    engine.dispose()
