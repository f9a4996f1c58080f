"""What each migration statement did to the application, and the budget's verdict on it.

A statement's locks are those its transaction holds right after it and did not hold before it,
plus those the sampler saw while it ran (a statement outside a transaction releases its locks
when it ends). Each lock is held from when it was requested (the sampler narrows that down
within a long statement) until it was released: at the end of the statement's transaction, or
of the statement itself outside one. Waiting in the lock queue counts: the application queues
behind a waiting request as it does behind a granted one.

The rules, for tables that held rows when the revision began (``populated``):

- a lock that blocks the application's reads or writes is held longer than the budget, or the
  application waited longer than that for the migrator (for rows it locked, which pg_locks does
  not list: one UPDATE of many rows);
- a table is rewritten (its relfilenode changes);
- a revision keeps such a lock while its transaction goes on to other, slow statements: the
  lock itself was taken by a fast statement, and a linter reading that statement sees nothing
  wrong.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from migrations.bookkeeping import MIGRATION_TABLES
from migrations.gate.lock_sampler import Tick
from migrations.gate.locks import ACCESS_EXCLUSIVE, Lock, spelled, strength
from migrations.gate.migrator import Recording, Revision, Statement
from migrations.gate.traffic import Measured

# Session settings and Alembic's own bookkeeping lock nothing the application uses.
NOT_SHOWN = re.compile(
    r"^\s*(SET|RESET|SHOW|SELECT set_config|SELECT pg_(try_)?advisory)|alembic_version", re.I
)


@dataclass(frozen=True)
class Hold:
    lock: Lock
    requested: float
    released: float
    statement_ended: float
    populated: bool
    dead_index: bool = False  # an index being dropped concurrently: nobody else uses or locks it

    @property
    def seconds(self) -> float:
        return self.released - self.requested

    @property
    def own(self) -> float:
        """How much of the hold its own statement accounts for."""
        return min(self.released, self.statement_ended) - self.requested

    @property
    def kept(self) -> float:
        """How long the transaction kept it after its statement ended."""
        return max(0.0, self.released - self.statement_ended)

    @property
    def blocks_writes(self) -> bool:
        return self.populated and not self.dead_index and self.lock.blocks_writes

    @property
    def blocks_reads(self) -> bool:
        return self.populated and not self.dead_index and self.lock.blocks_reads

    @property
    def blocks_application(self) -> bool:
        return self.blocks_writes or self.blocks_reads


@dataclass
class StatementReport:
    revision: str
    statement: Statement
    holds: list[Hold]
    rewritten: dict[str, tuple[int, int]]  # table: (relfilenode before, after)
    application_wait: float | None  # the longest time one transaction spent at the server meanwhile
    application_blocked: float  # the longest the sampler saw one application backend wait for it

    @property
    def sql(self) -> str:
        # As the driver sends it: a literal % is doubled for its parameter style.
        return " ".join(self.statement.sql.replace("%%", "%").split())

    @property
    def seconds(self) -> float:
        return self.statement.ended - self.statement.started

    def longest(self, writes: bool) -> float:
        blocking = [
            hold.seconds for hold in self.holds if (hold.blocks_writes if writes else hold.blocks_reads)
        ]
        return max(blocking, default=0.0)

    @property
    def access_exclusive(self) -> list[str]:
        return sorted({hold.lock.relation for hold in self.holds if hold.lock.mode == ACCESS_EXCLUSIVE})

    def locks_by_table(self) -> str:
        """The strongest lock on each table, and any lock on an index that blocks the application."""
        strongest: dict[str, str] = {}
        for hold in self.holds:
            if hold.lock.on_index and not hold.blocks_application:
                continue
            where = (
                f"{hold.lock.table} (index {hold.lock.relation})" if hold.lock.on_index else hold.lock.table
            )
            if strength(hold.lock.mode) > strength(strongest.get(where, "")):
                strongest[where] = hold.lock.mode
        return "; ".join(f"{where}: {spelled(mode)}" for where, mode in sorted(strongest.items()))


@dataclass(frozen=True)
class Violation:
    revision: str
    statement: str
    message: str

    def __str__(self) -> str:
        return f"revision {self.revision}, `{shortened(self.statement)}`: {self.message}"


@dataclass
class RevisionReport:
    revision: Revision
    statements: list[StatementReport]
    violations: list[Violation] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        ends = [s.statement.locks_released for s in self.statements if not math.isnan(s.statement.ended)]
        return max(ends, default=self.revision.started) - self.revision.started


def shortened(sql: str, limit: int = 90) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def revision_reports(
    recording: Recording, ticks: list[Tick], measured: Measured | None, budget: float
) -> list[RevisionReport]:
    reports = []
    for revision in recording.revisions:
        statements = statement_reports(revision, ticks, measured)
        report = RevisionReport(revision, statements)
        report.violations = list(violations(report, budget))
        reports.append(report)
    return reports


def statement_reports(
    revision: Revision, ticks: list[Tick], measured: Measured | None
) -> list[StatementReport]:
    reports = []
    held_before: frozenset[Lock] = frozenset()
    filenodes = dict(revision.filenodes)
    previous: Statement | None = None
    for statement in revision.statements:
        same_transaction = (
            previous is not None and previous.in_transaction and previous.transaction == statement.transaction
        )
        before = held_before if same_transaction else frozenset()
        holds = statement_holds(revision, statement, before, ticks)
        rewritten = {
            table: (filenodes[table], node)
            for table, node in statement.filenodes.items()
            if table in revision.populated and table in filenodes and filenodes[table] != node
        }
        blocking_end = max([statement.ended, *(hold.released for hold in holds if hold.blocks_application)])
        if statement.in_transaction and not math.isnan(statement.transaction_ended):
            blocking_end = max(blocking_end, statement.transaction_ended)  # its row locks last as long
        wait = None
        if measured is not None and not math.isnan(statement.ended):
            wait = measured.longest_wait(statement.started, blocking_end)
        blocked = longest_block(ticks, statement.started, blocking_end)
        if not NOT_SHOWN.search(statement.sql) or holds or rewritten:
            reports.append(StatementReport(revision.revision, statement, holds, rewritten, wait, blocked))
        if statement.error is None:
            held_before = statement.locks
            filenodes.update(statement.filenodes)
        previous = statement
    return reports


def statement_holds(
    revision: Revision, statement: Statement, held_before: frozenset[Lock], ticks: list[Tick]
) -> list[Hold]:
    """The locks `statement` took on relations other sessions could see, and how long each was held."""
    # Only the ticks read while it ran: one asked just before it began may report the locks of
    # the transaction before it, still committing.
    during = [tick for tick in ticks if statement.started <= tick.asked and tick.at <= statement.ended]
    first_seen: dict[Lock, float] = {}
    live: set[Lock] = set()
    for tick in during:
        for sighting in tick.sightings:
            first_seen.setdefault(sighting.lock, tick.at)
            if sighting.live:
                live.add(sighting.lock)
    holds = []
    for lock in (set(statement.locks) | set(first_seen)) - held_before:
        if lock.oid not in revision.existing:
            continue  # created by this revision: no other session can see it yet
        relation, table = revision.existing[lock.oid]
        if table in MIGRATION_TABLES:
            continue
        requested = statement.started
        if lock in first_seen:
            unseen = [tick.at for tick in during if tick.at < first_seen[lock]]
            requested = max([statement.started, *unseen[-1:]])
        elif during and lock in statement.locks:
            requested = max(statement.started, during[-1].at)
        released = statement.locks_released if lock in statement.locks else statement.ended
        if math.isnan(released):
            released = statement.ended
        named = Lock(lock.oid, relation, table, lock.mode)
        dead = lock in first_seen and lock not in live
        holds.append(Hold(named, requested, released, statement.ended, table in revision.populated, dead))
    return sorted(holds, key=lambda hold: (hold.lock.table, hold.lock.relation, strength(hold.lock.mode)))


def longest_block(ticks: list[Tick], start: float, end: float) -> float:
    """The longest one application backend was seen waiting for the migrator within [start, end]."""
    longest, since, last = 0.0, dict[int, float](), dict[int, float]()
    for tick in (tick for tick in ticks if start <= tick.at <= end):
        for pid in [pid for pid in since if pid not in tick.blocked]:
            longest = max(longest, last[pid] - since.pop(pid))
        for pid in tick.blocked:
            since.setdefault(pid, tick.at)
            last[pid] = tick.at
    return max([longest, *(last[pid] - first for pid, first in since.items())])


def violations(report: RevisionReport, budget: float) -> Iterable[Violation]:
    """Per statement, one finding: the populated tables it rewrote, else its longest hold over the budget."""
    statements = report.statements
    holding = set()  # transactions that hold a lock blocking the application: they explain its waits
    for index, row in enumerate(statements):
        if row.rewritten:
            for table, (before, after) in row.rewritten.items():
                held = max(
                    (hold.seconds for hold in row.holds if hold.lock.table == table), default=row.seconds
                )
                yield Violation(
                    row.revision,
                    row.sql,
                    f"rewrote {table} (relfilenode {before} -> {after}), a table holding rows, holding "
                    f"ACCESS EXCLUSIVE on it for {ms(held)}; {advice(row.sql)}",
                )
            continue
        over = [hold for hold in row.holds if hold.blocks_application and hold.seconds > budget]
        explained = row.statement.transaction in holding and row.statement.in_transaction
        if any(hold.blocks_application for hold in row.holds) and row.statement.in_transaction:
            holding.add(row.statement.transaction)
        if not over:
            if row.application_blocked > budget and not explained:
                yield Violation(
                    row.revision,
                    row.sql,
                    f"made the application wait {ms(row.application_blocked)} for rows it locked, over the "
                    f"{ms(budget)} budget: change them in batches, each its own short transaction (backfill)",
                )
            continue
        hold = max(over, key=lambda hold: (hold.seconds, hold.blocks_reads))
        blocked = "reads and writes" if hold.blocks_reads else "writes"
        if hold.own > budget or hold.kept <= budget / 2:
            yield Violation(
                row.revision,
                row.sql,
                f"held {hold.lock} for {ms(hold.seconds)}, over the {ms(budget)} budget; it blocks "
                f"{blocked}; {advice(row.sql)}",
            )
            continue
        later = [
            other
            for other in statements[index + 1 :]
            if other.statement.transaction == row.statement.transaction
        ]
        slowest = max(later, key=lambda other: other.seconds, default=None)
        through = f", through `{shortened(slowest.sql, 60)}` ({ms(slowest.seconds)})" if slowest else ""
        yield Violation(
            row.revision,
            row.sql,
            f"took {hold.lock} and the same transaction kept it {ms(hold.seconds)}{through}, over the "
            f"{ms(budget)} budget; it blocks {blocked}. Commit before the slow work: put it in a revision "
            "of its own, or update in batches (backfill)",
        )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


ADVICE = [
    (
        re.compile(r"CREATE\s+(UNIQUE\s+)?INDEX\s+(?!CONCURRENTLY)", re.I),
        "build it with create_index_concurrently",
    ),
    (
        re.compile(r"ADD\s+CONSTRAINT.*(CHECK|FOREIGN\s+KEY)(?!.*NOT\s+VALID)", re.I | re.S),
        "add it NOT VALID, then VALIDATE in a transaction of its own (add_check_constraint, add_foreign_key)",
    ),
    (
        re.compile(r"VALIDATE\s+CONSTRAINT", re.I),
        "VALIDATE in a transaction of its own (validate_constraint)",
    ),
    (
        re.compile(r"ADD\s+COLUMN.*DEFAULT", re.I | re.S),
        "add the column without a volatile default, then SET DEFAULT, then fill it in batches (backfill)",
    ),
    (
        re.compile(r"ALTER\s+COLUMN.*TYPE", re.I | re.S),
        "add a column of the new type, fill it in batches (backfill), then switch to it",
    ),
]


def advice(sql: str) -> str:
    return next(
        (text for pattern, text in ADVICE if pattern.search(sql)), "find a form that takes a weaker lock"
    )


HEADERS = [
    "statement",
    "locks taken",
    "blocks writes",
    "blocks reads",
    "rewrite",
    "app waited",
    "ACCESS EXCLUSIVE",
]


def markdown(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(
        [*lines, *("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows)]
    )


def hold_cell(row: StatementReport, writes: bool) -> str:
    holds = [hold for hold in row.holds if (hold.blocks_writes if writes else hold.blocks_reads)]
    if not holds:
        return "-"
    longest = max(holds, key=lambda hold: hold.seconds)
    kept = f" (kept {ms(longest.kept)} after it)" if longest.kept >= 0.0005 else ""
    return f"{ms(longest.seconds)}{kept}"


def statement_row(row: StatementReport) -> list[str]:
    failed = f" **failed: {row.statement.error}**" if row.statement.error else ""
    return [
        f"`{shortened(row.sql, 70)}`{failed}",
        row.locks_by_table() or "-",
        hold_cell(row, writes=True),
        hold_cell(row, writes=False),
        ", ".join(row.rewritten) or "no",
        "-" if row.application_wait is None else ms(row.application_wait),
        ", ".join(row.access_exclusive) or "-",
    ]


def render(report: RevisionReport, title: str) -> str:
    populated = report.revision.populated
    where = f"tables holding rows: {', '.join(sorted(populated))}" if populated else "every table empty"
    verdict = "FAIL" if report.violations else "PASS"
    heading = f"{verdict} {report.revision.revision} {title} ({where}; {report.seconds:.3f} s)"
    rows = [statement_row(row) for row in report.statements]
    table = markdown(HEADERS, rows) if rows else "(no statements)"
    return f"{heading}\n\n{table}"
