"""(e) with a hot standby: how far the live change leaves a read replica behind (issue 11).

``uv run python -m bench --live --standby`` runs the live change on a private primary with one
hot standby (streaming replication from ``pg_basebackup -R``: the replica tests' own cluster,
tests/helpers/replication.py), from the embedded default's PostgreSQL binaries, in the
temporary directory (on disk, as the embedded default's data is), with durability on and
PostgreSQL's default buffers; unlike the embedded default, its WAL segments are 1 MB. While
each way migrates, the standby serves the application's reads (the traffic's read
transactions), and a sampler reads, every 10 ms, the primary's WAL position and
alembic_version and the standby's:

- the replay lag at a moment is how long before it the primary had already written something
  the standby had not replayed yet (0 when it had replayed all the primary had written), read
  off the two servers' WAL positions: pg_stat_replication.replay_lag under-reports a stalled
  replay, and a freeze is what this is for. An upper bound, by at most the gap between two
  samples (its p99 is reported); where the standby was behind since before the first sample,
  a lower bound;
- a revision is on the standby when the standby's alembic_version shows it (its DDL commits in
  the same transaction): the delay from when the primary's first showed it.

When a way is done and the standby has caught up, its catalog is compared with the primary's
(migrations/catalog.py, as the gate and the replica tests compare them).
"""

from __future__ import annotations

import bisect
import itertools
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, LiteralString

import psycopg

from migrations.catalog import catalog, difference
from migrations.database.messages import first_line
from migrations.database.url import conninfo
from migrations.gate.population import Population
from migrations.gate.traffic import Measured, Settings, Traffic, percentile
from tests.helpers.replication import Cluster, installed_postgres, running_cluster

SAMPLE_EVERY = 0.01
READS = Settings(clients=2, rate=50, reads_only=True)
# As the embedded default runs, not as the replica tests do (durability off, small buffers).
PRIMARY_SETTINGS = {
    "fsync": "on",
    "full_page_writes": "on",
    "shared_buffers": "'128MB'",
    "max_wal_size": "'4GB'",
}
LAG_TARGET = 5.0
SCHEMA_TARGET = 1.0
CATCH_UP = 1800.0  # seconds for the standby to replay a loaded database, or a way's migration
ON_PRIMARY: LiteralString = (
    "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, (SELECT version_num FROM alembic_version LIMIT 1)"
)
ON_STANDBY: LiteralString = (
    "SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn, (SELECT version_num FROM alembic_version LIMIT 1)"
)
# A sample that takes longer is a stall of the sampler, not of replay: it fails the run.
SAMPLE_TIMEOUT = "-c statement_timeout=5s"


@contextmanager
def replicated_server() -> Iterator[Cluster]:
    """A primary and one hot standby, stopped and deleted on the way out."""
    installs = installed_postgres()
    if not installs:
        raise RuntimeError("no PostgreSQL with initdb and pg_basebackup found for the standby")
    root = Path(tempfile.gettempdir())
    with running_cluster(installs[0], standbys=1, settings=PRIMARY_SETTINGS, root=root) as cluster:
        yield cluster


def caught_up(cluster: Cluster) -> None:
    try:
        cluster.wait_for_replay(timeout=CATCH_UP)
    except TimeoutError as error:
        raise RuntimeError(str(error)) from None


@dataclass(frozen=True)
class Sample:
    at: float
    lsn: int
    version: str | None


@dataclass
class Recording:
    """What the sampler and the standby's readers saw while one way migrated."""

    primary: list[Sample] = field(default_factory=list)
    standby: list[Sample] = field(default_factory=list)
    reads: Measured = field(default_factory=Measured)
    catalog_difference: str = ""
    failure: str | None = None

    def lags(self, start: float, end: float) -> list[tuple[float, float]]:
        """(moment, replay lag) for each standby sample in [start, end]."""
        times = [sample.at for sample in self.primary]
        positions = [sample.lsn for sample in self.primary]
        found = []
        for sample in self.standby:
            if not start <= sample.at <= end:
                continue
            latest = bisect.bisect_right(times, sample.at) - 1
            if latest < 0 or positions[latest] <= sample.lsn:
                found.append((sample.at, 0.0))
                continue
            # The last primary sample the standby had all of; the next one was already ahead.
            replayed = bisect.bisect_right(positions, sample.lsn, 0, latest + 1) - 1
            since = times[max(replayed, 0)]
            found.append((sample.at, sample.at - since))
        return found

    def gaps(self, start: float, end: float) -> list[float]:
        """The time between consecutive standby samples in [start, end]."""
        moments = [sample.at for sample in self.standby if start <= sample.at <= end]
        return [later - earlier for earlier, later in itertools.pairwise(moments)]

    def schema_delays(self, revisions: list[str]) -> dict[str, float | None]:
        """For each revision, from the primary's first showing it (or a later one) to the standby's."""
        order = {revision: index for index, revision in enumerate(revisions)}

        def first(samples: list[Sample], revision: str) -> float | None:
            return next(
                (s.at for s in samples if s.version in order and order[s.version] >= order[revision]), None
            )

        delays: dict[str, float | None] = {}
        for revision in revisions:
            on_primary, on_standby = first(self.primary, revision), first(self.standby, revision)
            delays[revision] = (
                None if on_primary is None or on_standby is None else max(0.0, on_standby - on_primary)
            )
        return delays


def sample(connection: psycopg.Connection[Any], query: LiteralString) -> Sample:
    row = connection.execute(query, prepare=True).fetchone()
    assert row is not None
    return Sample(time.monotonic(), int(row[0]), row[1])


@contextmanager
def watching(cluster: Cluster, database: str, population: Population) -> Iterator[Recording]:
    """Reads on the standby and the two positions sampled, for as long as the block runs."""
    recording = Recording()
    stop = threading.Event()
    primary, standby = cluster.primary.url(database), cluster.standbys[0].url(database)

    def sampler() -> None:
        try:
            with (
                psycopg.connect(conninfo(primary), autocommit=True, options=SAMPLE_TIMEOUT) as on_primary,
                psycopg.connect(conninfo(standby), autocommit=True, options=SAMPLE_TIMEOUT) as on_standby,
            ):
                due = time.monotonic()
                while not stop.is_set():
                    recording.primary.append(sample(on_primary, ON_PRIMARY))
                    recording.standby.append(sample(on_standby, ON_STANDBY))
                    due = max(due + SAMPLE_EVERY, time.monotonic())  # on a fixed beat, not 10 ms after
                    stop.wait(due - time.monotonic())
        except psycopg.Error as error:
            recording.failure = first_line(error)

    thread = threading.Thread(target=sampler, daemon=True)
    with ExitStack() as stack:
        reads = stack.enter_context(Traffic(standby, population, READS).running())
        thread.start()
        stack.callback(thread.join, timeout=30)
        stack.callback(stop.set)
        yield recording
    if recording.failure is not None:
        raise RuntimeError(f"the standby's sampler failed: {recording.failure}")
    recording.reads = reads
    caught_up(cluster)
    recording.catalog_difference = difference(catalog(primary), catalog(standby), "primary", "standby")


def results(recording: Recording, window: tuple[float, float], revisions: list[str]) -> dict[str, Any]:
    lags = [lag for _, lag in recording.lags(*window)]
    gaps = recording.gaps(*window)
    reads = recording.reads.latency(*window)
    return {
        "replay_lag_s": {
            "p50": percentile(lags, 0.5) if lags else None,
            "p99": percentile(lags, 0.99) if lags else None,
            "max": max(lags, default=None),
            "samples": len(lags),
            "sample_gap_p99": percentile(gaps, 0.99) if gaps else None,
        },
        "schema_on_standby_after_s": recording.schema_delays(revisions),
        "reads_during": vars(reads),
        "reads_failed": [t.error for t in recording.reads.failures()],
        "catalog_matches": not recording.catalog_difference,
    }
