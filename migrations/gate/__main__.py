"""``python -m migrations.gate``: before a deploy, the revisions measured on a populated, busy database.

On a scratch database (DATABASE_URL's server, or the embedded one; never the database the URL
names): the revisions up to the previous release's head are applied to empty tables, then
``--enrollments`` enrollments are loaded, then every newer revision is applied while the
application's traffic runs, and each statement's locks, rewrites and the application's waits
are printed, a table per revision. Then the previous release's code is run against the new
head. Exits 1 when a check fails, naming the revision, the statement, the lock and the time.
"""

from __future__ import annotations

import argparse
import re
import sys
import time

from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import URL

from migrations.database.messages import OneLineArgumentParser, one_line_errors
from migrations.database.scratch import alembic_config, ensure_server_url, scratch_database
from migrations.gate import lock_budget, previous_release
from migrations.gate.population import populate, shape
from migrations.gate.report import RevisionReport, render
from migrations.gate.traffic import Settings

STARTED = time.monotonic()
DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s)$")


def log(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def seconds(text: str) -> float:
    match = DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 100ms or 0.5s")
    return float(match[1]) / (1000 if match[2] == "ms" else 1)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = OneLineArgumentParser(prog="python -m migrations.gate", description=__doc__.splitlines()[0])
    parser.add_argument("--enrollments", type=int, default=1_000_000, help="rows of student_course (1000000)")
    parser.add_argument(
        "--budget", type=seconds, default=lock_budget.DEFAULT_BUDGET, help="longest blocking lock (100ms)"
    )
    parser.add_argument("--previous", help="git ref of the previous release (default: the last v* tag)")
    parser.add_argument(
        "--load-at", help="revision to load the data at (default: the previous release's head)"
    )
    parser.add_argument("--clients", type=int, default=4, help="application connections (4)")
    parser.add_argument("--rate", type=float, default=50, help="transactions per second per connection (50)")
    args = parser.parse_args(argv)
    if args.enrollments < 1000 or args.clients < 1 or args.rate <= 0:
        parser.error("--enrollments must be at least 1000, --clients at least 1, --rate above 0")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    with one_line_errors(status=2):
        server = ensure_server_url()
        release = previous_release.resolve(args.previous) if args.previous else previous_release.find()
        return run(server, release, args)


def run(server: URL, release: previous_release.Release, args: argparse.Namespace) -> int:
    revisions = ScriptDirectory.from_config(alembic_config(server))
    titles = {script.revision: (script.doc or "").partition("\n")[0] for script in revisions.walk_revisions()}
    head = revisions.get_current_head()
    load_at = args.load_at or previous_release.released_head(release)
    if load_at not in titles:
        raise CommandError(f"--load-at {load_at}: no such revision in this history")
    students, courses = shape(args.enrollments)
    with scratch_database(server, prefix="gate") as url:
        log(f"applying the revisions up to {load_at} to empty tables")
        empty = lock_budget.measure(url, load_at, budget=args.budget)
        busy = None
        if load_at != head:
            log(f"loading {args.enrollments:,} enrollments ({students:,} students, {courses:,} courses)")
            population = populate(url, args.enrollments, log)
            log(f"applying the newer revisions under {args.clients} x {args.rate:g}/s of application traffic")
            busy = lock_budget.measure(
                url,
                "head",
                population=population,
                budget=args.budget,
                traffic=Settings(args.clients, args.rate),
            )
    log(f"running {release.name}'s code against the new head")
    older = previous_release.check(server, release)
    print(report(args, load_at, empty, busy, older, titles))
    return 1 if empty.violations or (busy and busy.violations) or not older.passed else 0


def report(
    args: argparse.Namespace,
    load_at: str,
    empty: lock_budget.Measurement,
    busy: lock_budget.Measurement | None,
    older: previous_release.PreviousReleaseReport,
    titles: dict[str, str],
) -> str:
    revisions: list[RevisionReport] = [*empty.reports, *(busy.reports if busy else [])]
    loaded = (
        f"Data loaded at {load_at}: {args.enrollments:,} enrollments; traffic {args.clients} x "
        f"{args.rate:g}/s while the newer revisions run."
        if busy
        else f"No revision after {load_at}: nothing to apply to a populated database."
    )
    parts = [
        f"Lock budget {args.budget * 1000:.0f} ms. {loaded}",
        *(render(revision, titles.get(revision.revision.revision, "")) for revision in revisions),
    ]
    if busy is not None and busy.traffic is not None:
        windows = ", ".join(
            f"{name}: {busy.traffic.latency(*busy.window(name))}" for name in ("before", "during", "after")
        )
        parts.append(f"Application traffic: {windows}.")
    gaps = sorted(busy.tick_gaps) if busy else []
    if gaps:
        parts.append(
            f"pg_locks sampled {len(gaps) + 1:,} times, every {gaps[len(gaps) // 2] * 1000:.1f} ms "
            f"(p99 {gaps[int(len(gaps) * 0.99)] * 1000:.1f} ms)."
        )
    new = ", ".join(older.new_revisions) or "none"
    parts.append(
        f"Previous release {older.release.name} (head {older.head}; revisions since: {new}), its code run "
        f"against the new head through {older.exercise}: {'PASS' if older.passed else 'FAIL'}"
    )
    failures = [*empty.violations, *(busy.violations if busy else []), *older.findings]
    if failures:
        parts.append("FAIL:\n" + "\n".join(f"- {failure}" for failure in failures))
    else:
        parts.append(
            "PASS: no revision holds a lock that blocks the application for over "
            f"{args.budget * 1000:.0f} ms, rewrites a table holding rows or keeps a blocking lock through "
            f"slow work; {older.release.name} works on the new head."
        )
    return "\n\n".join(parts)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
