"""(e) The live change: the enrolled_at revisions on 10M enrollments under traffic, ours and naive.

``uv run python -m bench --live``. One database is loaded at the revision before the change
(migrations/gate/population.py: COPY, keys and indexes after, VACUUM ANALYZE), and copied for
the naive way. On each, the gate's own machinery (migrations/gate/lock_budget.py) runs the
application's traffic, samples pg_locks, measures a baseline, runs ``alembic upgrade head``
and keeps measuring after it:

- ours: the project's revisions after the load point, then bench/safe/ (the same operations as
  the naive extras, through the project's helpers), when it exists;
- naive: bench/naive/: the enrolled_at revision as autogenerate wrote it (DEFAULT now() on
  ADD COLUMN, a plain DROP INDEX and CREATE INDEX), a CHECK validated in the transaction that
  added it, and a throwaway column backfilled by one UPDATE.

With ``--standby`` the server is a private primary with a hot standby, and bench/standby.py
watches the standby through each way: its replay lag, each revision's arrival, its readers.

Prints the tables, writes bench/live.json and bench/live.png (latency over time, each statement
marked), and checks the targets as ratios within the run.
"""

from __future__ import annotations

import argparse
import re
import shutil
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import URL

from bench import standby as replica
from bench.workload import log
from migrations import SCRIPT_LOCATION
from migrations.database.scratch import admin, alembic_config, scratch_database
from migrations.database.url import conninfo
from migrations.gate import lock_budget
from migrations.gate.population import Population, populate
from migrations.gate.report import markdown, ms, render, shortened
from migrations.gate.traffic import Settings
from migrations.history import scripts
from migrations.runner import Settings as MigrationSettings
from tests.helpers.replication import Cluster

HERE = Path(__file__).resolve().parent
NAIVE = HERE / "naive"
SAFE = HERE / "safe"
# The revision before the live change: the naive revisions follow it.
LIVE_CHANGE_FROM = "b8512725b275"
# The naive enrolled_at change, as autogenerate wrote it; the naive revisions after it are the
# extras (a CHECK, a backfill), measured apart, beside ours (bench/safe/): the targets are the
# project's change's.
NAIVE_CHANGE = "e104c87e9452"
EXTRAS_BASELINE = 10.0
BUDGET = 0.05
TRAFFIC = Settings(clients=4, rate=50)
TABLE = "student_course"


@dataclass
class Side:
    name: str
    measurement: lock_budget.Measurement
    relfilenode: tuple[int, int]
    script_location: Path | None
    standby: replica.Recording | None = None

    @property
    def traffic(self) -> Any:
        assert self.measurement.traffic is not None
        return self.measurement.traffic

    def latency(self, window: str) -> Any:
        return self.traffic.latency(*self.measurement.window(window))

    @property
    def longest_blocking_hold(self) -> float:
        return max(
            (
                row.longest(writes)
                for report in self.measurement.reports
                for row in report.statements
                for writes in (True, False)
            ),
            default=0.0,
        )

    @property
    def longest_application_wait(self) -> float:
        return max(
            (row.application_wait or 0.0 for report in self.measurement.reports for row in report.statements),
            default=0.0,
        )

    @property
    def migration_seconds(self) -> float:
        return self.measurement.recording.ended - self.measurement.recording.started


def copy_with(revisions: Path, directory: Path, after: str) -> Path:
    """migrations/ with every revision after `after` replaced by the revision files in `revisions`."""
    copy = directory / revisions.name
    shutil.copytree(SCRIPT_LOCATION, copy, ignore=shutil.ignore_patterns("__pycache__"))
    order = [script.revision for script in scripts(SCRIPT_LOCATION)]
    for script in scripts(SCRIPT_LOCATION)[order.index(after) + 1 :]:
        (copy / "versions" / Path(script.path).name).unlink()
    for path in sorted(revisions.glob("*.py")):
        shutil.copy(path, copy / "versions" / path.name)
    return copy


def extended(directory: Path) -> Path | None:
    """migrations/ plus bench/safe/'s revisions chained after the project's head, if bench/safe/ exists."""
    if not SAFE.is_dir():
        return None
    copy = directory / "ours"
    shutil.copytree(SCRIPT_LOCATION, copy, ignore=shutil.ignore_patterns("__pycache__"))
    head = scripts(SCRIPT_LOCATION)[-1].revision
    for path in sorted(SAFE.glob("*.py")):
        text = path.read_text().replace('"<the project head>"', repr(head))
        (copy / "versions" / path.name).write_text(text)
    return copy


def relfilenode(url: URL) -> int:
    with psycopg.connect(conninfo(url)) as conn:
        row = conn.execute("SELECT pg_relation_filenode(%s::regclass)", (TABLE,)).fetchone()
    assert row is not None
    return int(row[0])


def copy_database(server: URL, template: URL) -> URL:
    """A file-level copy of `template` (much faster than WAL_LOG's block by block at this size)."""
    name = f"{template.database}_naive"
    with admin(server) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template.database}" STRATEGY FILE_COPY')
    return server.set(database=name)


def side(
    name: str,
    url: URL,
    population: Population,
    script_location: Path | None,
    target: str,
    baseline: float,
    args: argparse.Namespace,
    cluster: Cluster | None = None,
) -> Side:
    log(f"{name}: {baseline:g} s of baseline, then alembic upgrade {target}, then {args.after:g} s more")
    before = relfilenode(url)
    with ExitStack() as stack:
        watched = None
        if cluster is not None:
            watched = stack.enter_context(replica.watching(cluster, str(url.database), population))
        measurement = lock_budget.measure(
            url,
            target,
            script_location=script_location,
            population=population,
            budget=BUDGET,
            traffic=TRAFFIC,
            warmup=baseline,
            cooldown=args.after,
        )
    if measurement.recording.error:
        raise RuntimeError(f"{name}: the migration failed: {measurement.recording.error}")
    log(f"{name}: migrated in {measurement.recording.ended - measurement.recording.started:.1f} s")
    return Side(name, measurement, (before, relfilenode(url)), script_location, watched)


def run(
    server: URL, args: argparse.Namespace, directory: Path, cluster: Cluster | None = None
) -> tuple[dict[str, Any], list[Side]]:
    """Both ways measured; `directory` holds the copies of migrations/ they ran from.

    With `cluster` (whose primary is `server`), each way is watched from its hot standby too."""
    with scratch_database(server, prefix="bench") as url:
        log(f"live change: migrating to {LIVE_CHANGE_FROM}, then loading {args.enrollments:,} enrollments")
        command.upgrade(alembic_config(url), LIVE_CHANGE_FROM)
        started = time.perf_counter()
        population = populate(url, args.enrollments, log)
        load_seconds = time.perf_counter() - started
        naive_url = copy_database(server, url)
        try:
            log("copied the loaded database for the naive way")
            catch_up = None
            if cluster is not None:
                started = time.perf_counter()
                replica.caught_up(cluster)
                catch_up = time.perf_counter() - started
                log(f"the standby replayed the load and the copy {catch_up:.1f} s later")
            ours_copy, naive_copy = extended(directory), copy_with(NAIVE, directory, LIVE_CHANGE_FROM)
            project_head = scripts(SCRIPT_LOCATION)[-1].revision
            ours = side("ours", url, population, ours_copy, project_head, args.baseline, args, cluster)
            naive = side(
                "naive", naive_url, population, naive_copy, NAIVE_CHANGE, args.baseline, args, cluster
            )
            extras = [
                side(f"{name}, the extras", at, population, copy, "head", EXTRAS_BASELINE, args, cluster)
                for name, at, copy in (("ours", url, ours_copy), ("naive", naive_url, naive_copy))
                if copy is not None
            ]
        finally:
            with admin(server) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{naive_url.database}" WITH (FORCE)')
    with psycopg.connect(conninfo(server)) as conn:
        version = conn.info.parameter_status("server_version") or "unknown"
    results = summarize(version, population, load_seconds, ours, naive, extras)
    results["meta"]["standby_caught_up_s"] = catch_up
    return results, [ours, naive, *extras]


def seconds_of(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|min|h)?", duration)
    assert match is not None, duration
    return int(match[1]) * {"ms": 0.001, "s": 1, "min": 60, "h": 3600, None: 0.001}[match[2]]


def summarize(
    version: str, population: Population, load_seconds: float, ours: Side, naive: Side, extras: list[Side]
) -> dict[str, Any]:
    lock_timeout = seconds_of(MigrationSettings.from_environment().lock_timeout)
    baseline, during = ours.latency("before"), ours.latency("during")
    failed = len(ours.traffic.failures())
    hold = ours.longest_blocking_hold
    rewritten = ours.relfilenode[0] != ours.relfilenode[1] or any(
        TABLE in row.rewritten for report in ours.measurement.reports for row in report.statements
    )
    wait_ratio = naive.longest_application_wait / max(ours.longest_application_wait, 1e-6)
    targets = [
        ("load 10M enrollments in under 2 minutes", load_seconds <= 120, f"{load_seconds:.1f} s"),
        ("0 failed application transactions", failed == 0, f"{failed}"),
        (
            "longest hold of a lock blocking reads or writes <= 50 ms",
            hold <= BUDGET,
            ms(hold),
        ),
        (
            "p99 during the migration <= 2x the baseline's",
            during.p99 <= 2 * baseline.p99,
            f"{during.p99 * 1000:.1f} ms vs {baseline.p99 * 1000:.1f} ms "
            f"({during.p99 / max(baseline.p99, 1e-9):.2f}x)",
        ),
        (
            f"max latency during <= lock_timeout ({lock_timeout * 1000:.0f} ms) + 100 ms",
            during.max <= lock_timeout + 0.1,
            ms(during.max),
        ),
        (
            f"{TABLE} never rewritten",
            not rewritten,
            f"relfilenode {ours.relfilenode[0]} -> {ours.relfilenode[1]}",
        ),
        (
            "the naive way's longest application wait >= 10x ours",
            wait_ratio >= 10,
            f"{ms(naive.longest_application_wait)} vs {ms(ours.longest_application_wait)} "
            f"({wait_ratio:.0f}x)",
        ),
    ]
    sides = {s.name: side_results(s) for s in (ours, naive, *extras)}
    if (watched := sides[ours.name]["standby"]) is not None:
        targets += standby_targets(watched)
    return {
        "meta": {
            "postgresql": version,
            "enrollments": population.enrollments,
            "students": population.students,
            "courses": population.courses,
            "load_seconds": load_seconds,
            "traffic": {"clients": TRAFFIC.clients, "rate_per_client": TRAFFIC.rate},
            "lock_timeout_s": lock_timeout,
        },
        "sides": sides,
        "targets": [
            {"target": name, "passed": passed, "measured": measured} for name, passed, measured in targets
        ],
    }


def revisions_of(s: Side) -> list[str]:
    return [report.revision.revision for report in s.measurement.reports]


def delays_text(delays: dict[str, float | None]) -> str:
    return ", ".join(
        f"{revision}: {'not seen' if delay is None else ms(delay)}" for revision, delay in delays.items()
    )


def standby_targets(found: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """Ours, as replica.results() found it."""
    lag = found["replay_lag_s"]["max"]
    delays = found["schema_on_standby_after_s"]
    slowest = max((delay for delay in delays.values() if delay is not None), default=None)
    failed = found["reads_failed"]
    return [
        (
            f"the standby's replay lag during the migration <= {replica.LAG_TARGET:g} s",
            lag is not None and lag <= replica.LAG_TARGET,
            "no samples" if lag is None else f"max {ms(lag)} over {found['replay_lag_s']['samples']} samples",
        ),
        (
            f"each revision on the standby within {replica.SCHEMA_TARGET:g} s of the primary",
            slowest is not None and None not in delays.values() and slowest <= replica.SCHEMA_TARGET,
            delays_text(delays),
        ),
        (
            "the standby's catalog equals the primary's once it has caught up",
            found["catalog_matches"],
            "equal" if found["catalog_matches"] else "differs",
        ),
        (
            "0 failed reads on the standby",
            not failed,
            str(len(failed)) + (f" ({failed[0]})" if failed else ""),
        ),
    ]


def side_results(s: Side) -> dict[str, Any]:
    sampler = sorted(s.measurement.tick_gaps)
    return {
        "migration_seconds": s.migration_seconds,
        "relfilenode": list(s.relfilenode),
        "failed": len(s.traffic.failures()),
        "longest_blocking_hold_s": s.longest_blocking_hold,
        "longest_application_wait_s": s.longest_application_wait,
        "latency": {window: vars(s.latency(window)) for window in ("before", "during", "after")},
        "standby": None
        if s.standby is None
        else replica.results(s.standby, s.measurement.window("during"), revisions_of(s)),
        "sampler_gap_ms": {
            "p50": sampler[len(sampler) // 2] * 1000 if sampler else None,
            "p99": sampler[int(len(sampler) * 0.99)] * 1000 if sampler else None,
        },
        "revisions": [
            {
                "revision": report.revision.revision,
                "seconds": report.seconds,
                "statements": [
                    {
                        "sql": row.sql,
                        "seconds": row.seconds,
                        "locks": row.locks_by_table(),
                        "blocks_writes_s": row.longest(writes=True),
                        "blocks_reads_s": row.longest(writes=False),
                        "rewritten": list(row.rewritten),
                        "application_wait_s": row.application_wait,
                        "access_exclusive": row.access_exclusive,
                    }
                    for row in report.statements
                ],
            }
            for report in s.measurement.reports
        ],
    }


def titles(script_location: Path | None) -> dict[str, str]:
    config = alembic_config(URL.create("postgresql+psycopg"), script_location=script_location)
    return {
        script.revision: (script.doc or "").partition("\n")[0]
        for script in ScriptDirectory.from_config(config).walk_revisions()
    }


def statements_table(results: dict[str, Any]) -> str:
    """Every statement of both ways, as bench/live.json records them: the README's table."""
    rows = [
        [
            way,
            revision["revision"],
            f"`{shortened(statement['sql'], 60)}`",
            statement["locks"] or "-",
            ms(hold) if (hold := max(statement["blocks_writes_s"], statement["blocks_reads_s"])) else "-",
            ", ".join(statement["rewritten"]) or "no",
            ms(statement["application_wait_s"] or 0.0),
            f"{statement['seconds']:.2f} s",
        ]
        for way, side in results["sides"].items()
        for revision in side["revisions"]
        for statement in revision["statements"]
    ]
    headers = ["way", "revision", "statement", "locks", "blocking hold", "rewrite", "app waited", "took"]
    return markdown(headers, rows)


LAG_COLUMNS = ("p50", "p99", "max", "sample_gap_p99")


def report(results: dict[str, Any], sides: list[Side]) -> str:
    meta = results["meta"]
    parts = [
        f"(e) The live change at {meta['enrollments']:,} enrollments ({meta['students']:,} students, "
        f"{meta['courses']:,} courses), loaded in {meta['load_seconds']:.1f} s; traffic {TRAFFIC.clients} "
        f"connections x {TRAFFIC.rate:g}/s; PostgreSQL {meta['postgresql']}."
        + (
            ""
            if meta.get("standby_caught_up_s") is None
            else f" A hot standby replayed the load and its copy {meta['standby_caught_up_s']:.1f} s after."
        )
    ]
    rows = []
    for s in sides:
        for window in ("before", "during", "after"):
            latency = s.latency(window)
            rows.append(
                [
                    s.name,
                    window,
                    f"{latency.per_second:.0f}/s",
                    f"{latency.p50 * 1000:.1f} ms",
                    f"{latency.p99 * 1000:.1f} ms",
                    f"{latency.max * 1000:.1f} ms",
                    str(latency.failed),
                ]
            )
    parts.append(markdown(["way", "window", "throughput", "p50", "p99", "max", "failed"], rows))
    summary = [
        [
            s.name,
            f"{s.migration_seconds:.1f} s",
            ms(s.longest_blocking_hold),
            ms(s.longest_application_wait),
            "yes" if s.relfilenode[0] != s.relfilenode[1] else "no",
            str(len(s.traffic.failures())),
        ]
        for s in sides
    ]
    parts.append(
        markdown(
            ["way", "migration", "longest blocking hold", "longest app wait", f"{TABLE} rewritten", "failed"],
            summary,
        )
    )
    for s in sides:
        names = titles(s.script_location)
        for revision in s.measurement.reports:
            parts.append(f"{s.name}: " + render(revision, names.get(revision.revision.revision, "")))
    standby_rows = [
        [
            name,
            *(
                ms(lag[key]) if lag[key] is not None else "-"
                for key in ("p50", "p99", "max", "sample_gap_p99")
            ),
            delays_text(found["schema_on_standby_after_s"]),
            f"{found['reads_during']['p99'] * 1000:.1f} ms",
            str(len(found["reads_failed"])),
            "yes" if found["catalog_matches"] else "NO",
        ]
        for name, side_ in results["sides"].items()
        if (found := side_["standby"]) is not None
        for lag in [found["replay_lag_s"]]
    ]
    if standby_rows:
        headers = [
            "way",
            "replay lag p50",
            "p99",
            "max",
            "sample gap p99",
            "each revision on the standby after",
            "standby reads p99",
            "failed",
            "catalog equal",
        ]
        parts.append("The hot standby, during each migration:\n\n" + markdown(headers, standby_rows))
    verdicts = [["PASS" if t["passed"] else "FAIL", t["target"], t["measured"]] for t in results["targets"]]
    parts.append(markdown(["", "target", "measured"], verdicts))
    return "\n\n".join(parts)


def plot(sides: list[Side], path: Path) -> None:
    """Each side's application latency over time; each migration statement shaded and numbered."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(sides), 1, figsize=(14, 3.4 * len(sides)), sharey=True)
    for axis, s in zip(axes, sides, strict=True):
        start = s.measurement.recording.started
        done = [t for t in s.traffic.transactions if t.error is None]
        failed = [t for t in s.traffic.transactions if t.error is not None]
        axis.scatter(
            [t.scheduled - start for t in done], [t.latency * 1000 for t in done], s=2, color="tab:blue"
        )
        if failed:
            axis.scatter(
                [t.scheduled - start for t in failed],
                [t.latency * 1000 for t in failed],
                s=10,
                color="red",
                marker="x",
                label="failed",
            )
            axis.legend(loc="upper right")
        rows = [row for report in s.measurement.reports for row in report.statements]
        legend = []
        for number, row in enumerate(rows, 1):
            begin, end = row.statement.started - start, row.statement.ended - start
            axis.axvspan(begin, max(end, begin + 0.02), color="tab:orange", alpha=0.3)
            axis.text(begin, 1.01, str(number), fontsize=7, transform=axis.get_xaxis_transform())
            # matplotlib reads $...$ as mathematics: a DO $$ block would not print.
            legend.append(f"{number}. {shortened(row.sql, 58)} ({row.seconds:.2f} s)".replace("$", r"\$"))
        axis.text(
            1.01, 1, "\n".join(legend), fontsize=7, va="top", family="monospace", transform=axis.transAxes
        )
        axis.set(
            yscale="log",
            ylabel="application latency (ms)",
            title=f"{s.name}: longest application wait {ms(s.longest_application_wait)}, "
            f"migration {s.migration_seconds:.1f} s",
        )
    axes[-1].set_xlabel("seconds since alembic upgrade started; shaded and numbered: each statement")
    figure.subplots_adjust(left=0.06, right=0.66, top=0.96, bottom=0.05, hspace=0.45)
    figure.savefig(path, dpi=100)
