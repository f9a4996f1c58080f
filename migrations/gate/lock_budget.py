"""Check 1: each revision applied under traffic, its locks sampled, its statements judged.

``measure`` runs the application's traffic (when the database is populated) and the lock
sampler, waits `warmup` seconds so that the traffic has a baseline, runs ``alembic upgrade`` to
`target` through the recording migrator, lets the traffic catch up with what the migration kept it
from sending and run `cooldown` seconds more, then
puts the three recordings together, statement by statement (report.py). The benchmark's live
change (bench/live.py) calls the same function at 10M enrollments.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import URL

from migrations.gate import migrator
from migrations.gate.lock_sampler import LockSampler, Tick
from migrations.gate.population import Population
from migrations.gate.report import RevisionReport, Violation, revision_reports
from migrations.gate.traffic import APPLICATION_NAME, Measured, Settings, Traffic

DEFAULT_BUDGET = 0.1


@dataclass
class Measurement:
    recording: migrator.Recording
    ticks: list[Tick]
    tick_gaps: list[float]
    traffic: Measured | None
    reports: list[RevisionReport]
    budget: float
    caught_up: float  # when the application had sent all the migration held back (its end, without traffic)

    @property
    def violations(self) -> list[Violation]:
        found = [violation for report in self.reports for violation in report.violations]
        if self.recording.error is not None:
            found.append(Violation("-", "alembic upgrade", f"the migration failed: {self.recording.error}"))
        return found

    def window(self, name: str) -> tuple[float, float]:
        """'before', 'during' or 'after' the migration, as monotonic times.

        'during' lasts until the application caught up: what the migration held back is its doing.
        """
        assert self.traffic is not None
        start = self.traffic.started
        end = max((t.ended for t in self.traffic.transactions), default=self.caught_up)
        return {
            "before": (start, self.recording.started),
            "during": (self.recording.started, self.caught_up),
            "after": (self.caught_up, end),
        }[name]


def caught_up(measured: Measured, patience: float = 600) -> float:
    """Wait until the application has sent what it could not send while the migration blocked it."""
    deadline = time.monotonic() + patience
    while measured.behind() > 0.1 and time.monotonic() < deadline:
        time.sleep(0.2)
    return time.monotonic()


def measure(
    url: URL,
    target: str = "head",
    *,
    script_location: Path | None = None,
    population: Population | None = None,
    budget: float = DEFAULT_BUDGET,
    traffic: Settings | None = None,
    warmup: float = 1.0,
    cooldown: float = 0.5,
) -> Measurement:
    """Upgrade `url` to `target`, under traffic when `population` says what was loaded."""
    sampler = LockSampler(url, APPLICATION_NAME)
    measured: Measured | None = None
    with ExitStack() as stack:
        if population is not None:
            measured = stack.enter_context(Traffic(url, population, traffic or Settings()).running())
        stack.enter_context(sampler.running())
        if measured is not None:
            time.sleep(warmup)

        def follow(pid: int) -> None:
            sampler.pid = pid

        recording = migrator.upgrade(url, target, script_location=script_location, on_backend=follow)
        done = recording.ended
        if measured is not None:
            done = caught_up(measured)
            time.sleep(cooldown)
    reports = revision_reports(recording, sampler.ticks, measured, budget)
    return Measurement(recording, sampler.ticks, sampler.gaps(), measured, reports, budget, done)
