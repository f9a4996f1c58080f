"""PostgreSQL's table lock modes, and which of them block the application.

The application takes ACCESS SHARE to read (SELECT), ROW EXCLUSIVE to write (INSERT, UPDATE,
DELETE), and ROW SHARE on the table a foreign key refers to (its check reads the referenced row
FOR KEY SHARE). A migration lock that conflicts with one of those queues the application behind
it, and so does a request for one that is still waiting: the lock queue is first come, first
served. SHARE UPDATE EXCLUSIVE (CREATE INDEX CONCURRENTLY, VALIDATE CONSTRAINT) blocks neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Weakest first: pg_locks' name, and the name LOCK TABLE and the documentation use.
MODES = {
    "AccessShareLock": "ACCESS SHARE",
    "RowShareLock": "ROW SHARE",
    "RowExclusiveLock": "ROW EXCLUSIVE",
    "ShareUpdateExclusiveLock": "SHARE UPDATE EXCLUSIVE",
    "ShareLock": "SHARE",
    "ShareRowExclusiveLock": "SHARE ROW EXCLUSIVE",
    "ExclusiveLock": "EXCLUSIVE",
    "AccessExclusiveLock": "ACCESS EXCLUSIVE",
}
ACCESS_EXCLUSIVE = "AccessExclusiveLock"
BLOCKS_WRITES = frozenset({"ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", ACCESS_EXCLUSIVE})
BLOCKS_READS = frozenset({ACCESS_EXCLUSIVE})


def spelled(mode: str) -> str:
    return MODES.get(mode, mode)


def strength(mode: str) -> int:
    return list(MODES).index(mode) if mode in MODES else -1


@dataclass(frozen=True)
class Lock:
    """A relation lock: on a table, or on one of its indexes (`relation` is then the index).

    The same lock whatever names it was seen under: a relation created or dropped by the
    migrator's open transaction has a name only that transaction sees, or only the others.
    """

    oid: int
    relation: str = field(compare=False)
    table: str = field(compare=False)
    mode: str

    @property
    def on_index(self) -> bool:
        return self.relation != self.table

    @property
    def blocks_writes(self) -> bool:
        return self.mode in BLOCKS_WRITES

    @property
    def blocks_reads(self) -> bool:
        # An index locked ACCESS EXCLUSIVE stops every query that plans on its table.
        return self.mode in BLOCKS_READS

    @property
    def blocks_application(self) -> bool:
        return self.blocks_writes or self.blocks_reads

    def __str__(self) -> str:
        where = f"{self.relation} (an index of {self.table})" if self.on_index else self.table
        return f"{spelled(self.mode)} on {where}"
