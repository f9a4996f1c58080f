"""The application's traffic during a migration, from a process of its own, and what it measured.

``Traffic(url, population).running()`` starts ``python -m migrations.gate.traffic``: `clients`
connections, each sending transactions at a steady rate (Poisson arrivals, like pgbench
``--rate``): a course's roster (names through a join), the students of a course, the courses of
a student (the two lookups of models/queries.py, as SQL that works at every revision), an
enrollment and an unenrollment. Each transaction's latency counts from when it was scheduled,
not when it was sent, so a client stuck behind a lock is charged for the transactions it could
not send meanwhile (no coordinated omission). A failing transaction is recorded with its error,
and the client goes on.

A process of its own, so that its clocks are not held up by the migrator's or the sampler's
Python; pgbench would do the same, but it aborts a client at its first SQL error, and cannot be
told to stop and still write its log. Both processes read the same monotonic clock.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from sqlalchemy import URL

from migrations import ALEMBIC_INI
from migrations.database.messages import first_line
from migrations.database.url import ENV_VAR, conninfo, parse_database_url
from migrations.gate.population import COURSES_PER_STUDENT, Population

APPLICATION_NAME = "migration gate traffic"
# name: (SQL, weight). Reads outnumber writes; enrollments and unenrollments balance.
TRANSACTIONS = {
    # Each name by its primary key: the plan stays a probe per student whatever the statistics say.
    "roster of a course": (
        "SELECT (SELECT name FROM students WHERE id = sc.student_id) FROM student_course AS sc "
        "WHERE sc.course_id = %s ORDER BY sc.student_id",
        2,
    ),
    "students of a course": (
        "SELECT array_agg(student_id ORDER BY student_id) FROM student_course WHERE course_id = %s",
        2,
    ),
    "courses of a student": (
        "SELECT array_agg(course_id ORDER BY course_id) FROM student_course WHERE student_id = %s",
        4,
    ),
    "enroll": (
        "INSERT INTO student_course (student_id, course_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        1,
    ),
    "unenroll": ("DELETE FROM student_course WHERE student_id = %s AND course_id = %s", 1),
}
WRITES = ("enroll", "unenroll")


@dataclass(frozen=True)
class Settings:
    clients: int = 4
    rate: float = 50.0  # transactions per second per client
    reads_only: bool = False  # for a hot standby: the application's reads, without its writes


@dataclass(frozen=True)
class Transaction:
    kind: str
    scheduled: float
    sent: float
    ended: float
    error: str | None

    @property
    def latency(self) -> float:
        return self.ended - self.scheduled

    def running_during(self, start: float, end: float) -> float:
        """How long it was at the server within [start, end]."""
        return max(0.0, min(self.ended, end) - max(self.sent, start))


@dataclass(frozen=True)
class Latency:
    """Transactions scheduled in a window: how many, how many failed, per second, and their latency."""

    count: int
    failed: int
    per_second: float
    p50: float
    p99: float
    max: float

    def __str__(self) -> str:
        return (
            f"{self.per_second:.0f}/s, p50 {self.p50 * 1000:.1f} ms, p99 {self.p99 * 1000:.1f} ms, "
            f"max {self.max * 1000:.1f} ms, {self.failed} failed"
        )


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile; 0 for no values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


@dataclass
class Measured:
    transactions: list[Transaction] = field(default_factory=list)
    started: float = 0.0
    # While it runs: how far behind its schedule the slowest client is, in seconds.
    behind: Callable[[], float] = lambda: 0.0

    def scheduled_in(self, start: float, end: float) -> list[Transaction]:
        return [t for t in self.transactions if start <= t.scheduled < end]

    def failures(self) -> list[Transaction]:
        return [t for t in self.transactions if t.error is not None]

    def longest_wait(self, start: float, end: float) -> float:
        """The longest time one transaction spent at the server within [start, end]."""
        return max((t.running_during(start, end) for t in self.transactions), default=0.0)

    def latency(self, start: float, end: float) -> Latency:
        window = self.scheduled_in(start, end)
        latencies = [t.latency for t in window]
        return Latency(
            len(window),
            sum(t.error is not None for t in window),
            len(window) / (end - start) if end > start else 0.0,
            percentile(latencies, 0.5),
            percentile(latencies, 0.99),
            max(latencies, default=0.0),
        )


def parameters(kind: str, population: Population, rng: random.Random) -> tuple[int, ...]:
    index = rng.randrange(population.students)
    student = population.first_student + index
    if kind in ("roster of a course", "students of a course"):
        return (population.first_course + rng.randrange(population.courses),)
    if kind == "courses of a student":
        return (student,)
    if kind == "enroll":
        return (student, population.first_course + rng.randrange(population.courses))
    return (student, population.course_of(index, rng.randrange(COURSES_PER_STUDENT)))


@dataclass
class Traffic:
    url: URL
    population: Population
    settings: Settings = field(default_factory=Settings)

    @contextmanager
    def running(self) -> Iterator[Measured]:
        """Traffic from the moment its clients are connected until the block ends."""
        env = {**os.environ, ENV_VAR: self.url.render_as_string(hide_password=False)}
        process = subprocess.Popen(
            [sys.executable, "-m", "migrations.gate.traffic"],
            cwd=ALEMBIC_INI.parent,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdin is not None
        assert process.stdout is not None
        measured = Measured()
        try:
            process.stdin.write(
                json.dumps({"population": asdict(self.population), "settings": asdict(self.settings)}) + "\n"
            )
            process.stdin.flush()
            ready = process.stdout.readline()
            if not ready.startswith("ready"):
                raise RuntimeError(f"the traffic did not start: {ready.strip() or 'no answer'}")
            measured.started = float(ready.split()[1])

            def behind() -> float:
                assert process.stdin is not None
                assert process.stdout is not None
                process.stdin.write("behind\n")
                process.stdin.flush()
                return float(process.stdout.readline())

            measured.behind = behind
            yield measured
        finally:
            output, _ = process.communicate("stop\n", timeout=600)
        if process.returncode != 0:
            raise RuntimeError(f"the application's traffic stopped with exit status {process.returncode}")
        measured.transactions = [Transaction(*row) for row in json.loads(output)]


Row = tuple[str, float, float, float, str | None]


def client(
    number: int,
    conn: psycopg.Connection[Any],
    population: Population,
    settings: Settings,
    stop: threading.Event,
    due: list[float | None],
) -> list[Row]:
    """Send transactions on schedule until `stop`; `due[number]` is the schedule of the one overdue."""
    rng = random.Random(number)  # noqa: S311 - reproducible traffic, not secrets
    kinds = [
        kind
        for kind, (_, weight) in TRANSACTIONS.items()
        if not (settings.reads_only and kind in WRITES)
        for _ in range(weight)
    ]
    done: list[Row] = []
    scheduled = time.monotonic()
    while not stop.is_set():
        scheduled += rng.expovariate(settings.rate)
        delay = scheduled - time.monotonic()
        due[number] = None if delay > 0 else scheduled
        if delay > 0 and stop.wait(delay):
            break
        due[number] = scheduled
        kind = rng.choice(kinds)
        error = None
        sent = time.monotonic()
        try:
            cursor = conn.execute(TRANSACTIONS[kind][0], parameters(kind, population, rng), prepare=True)
            if cursor.description is not None:
                cursor.fetchall()
        except psycopg.Error as failure:
            error = (getattr(failure.diag, "message_primary", None) or str(failure)).splitlines()[0]
        done.append((kind, scheduled, sent, time.monotonic(), error))
    return done


def main() -> None:
    config = json.loads(sys.stdin.readline())
    population = Population(**config["population"])
    settings = Settings(**config["settings"])
    target = conninfo(parse_database_url(os.environ[ENV_VAR]))
    try:
        connections = [
            psycopg.connect(target, autocommit=True, application_name=APPLICATION_NAME)
            for _ in range(settings.clients)
        ]
    except psycopg.Error as error:  # the parent reads this line instead of "ready"
        print(f"cannot connect: {first_line(error)}", flush=True)
        sys.exit(1)
    stop = threading.Event()
    results: list[list[Row]] = [[] for _ in connections]
    due: list[float | None] = [None for _ in connections]

    def run(number: int) -> None:
        results[number] = client(number, connections[number], population, settings, stop, due)

    threads = [threading.Thread(target=run, args=(number,)) for number in range(len(connections))]
    print(f"ready {time.monotonic()}", flush=True)
    for thread in threads:
        thread.start()
    for line in sys.stdin:  # until "stop", or the end of the input: the parent is done or gone
        if line.strip() != "behind":
            break
        now = time.monotonic()
        print(max((now - scheduled for scheduled in due if scheduled is not None), default=0.0), flush=True)
    stop.set()
    for thread in threads:
        thread.join()
    for conn in connections:
        conn.close()
    print(json.dumps([row for rows in results for row in rows]))


if __name__ == "__main__":
    main()
