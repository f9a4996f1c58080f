"""The README's ER diagram, generated from the models: ``uv run python -m migrations.er_diagram``.

Rewrites the Mermaid block between the README's er-diagram markers; the tests fail while
it is stale. Not paracelsus, though it writes the same format: paracelsus 0.15 takes a
column in a composite primary key for a unique one, and so draws each student with at
most one enrollment.
"""

from __future__ import annotations

import re
import sys

from sqlalchemy import Column, ForeignKeyConstraint, MetaData, Table, UniqueConstraint, create_engine

from migrations import SCRIPT_LOCATION
from models import metadata

README = SCRIPT_LOCATION.parent / "README.md"
# Types as PostgreSQL spells them; the engine is never connected.
POSTGRESQL = create_engine("postgresql+psycopg://").dialect
BLOCK = re.compile(r"(<!-- er-diagram:start -->\n).*?(<!-- er-diagram:end -->)", re.DOTALL)


def attribute(column: Column[object]) -> str:
    keys = ",".join(
        key for key, applies in (("PK", column.primary_key), ("FK", column.foreign_keys)) if applies
    )
    # As PostgreSQL spells it, in one word as Mermaid needs: TIMESTAMP_WITH_TIME_ZONE.
    type_name = re.sub(r"[^\w()\[\]-]+", "_", column.type.compile(dialect=POSTGRESQL))
    return " ".join(filter(None, [type_name, column.name, keys, '"nullable"' if column.nullable else ""]))


def unique_alone(table: Table, columns: set[str]) -> bool:
    """Whether these columns, by themselves, are unique: a key that includes more does not count."""
    keys = [
        table.primary_key.columns,
        *(constraint.columns for constraint in table.constraints if isinstance(constraint, UniqueConstraint)),
        *(index.columns for index in table.indexes if index.unique),
    ]
    return any({column.name for column in key} == columns for key in keys)


def relationship(table: Table, foreign_key: ForeignKeyConstraint) -> str:
    columns = {column.name for column in foreign_key.columns}
    left = "|o" if any(column.nullable for column in foreign_key.columns) else "||"
    right = "o|" if unique_alone(table, columns) else "o{"
    label = ",".join(column.name for column in foreign_key.columns)
    return f"  {foreign_key.referred_table.name} {left}--{right} {table.name} : {label}"


def mermaid(schema: MetaData) -> str:
    """Tables by name, key columns first (as paracelsus orders them), then the relationships."""
    lines = ["erDiagram"]
    tables = sorted(schema.tables.values(), key=lambda table: table.name)
    for table in tables:
        columns = sorted(table.columns, key=lambda c: (not c.primary_key, not c.foreign_keys, c.name))
        lines += [f"  {table.name} {{", *(f"    {attribute(column)}" for column in columns), "  }", ""]
    lines += sorted(
        relationship(table, constraint)
        for table in tables
        for constraint in table.constraints
        if isinstance(constraint, ForeignKeyConstraint)
    )
    return "\n".join(lines) + "\n"


def with_diagram(readme: str) -> str:
    if not BLOCK.search(readme):
        raise ValueError("README.md has no <!-- er-diagram:start --> ... <!-- er-diagram:end --> block")
    return BLOCK.sub(lambda match: f"{match[1]}```mermaid\n{mermaid(metadata)}```\n{match[2]}", readme)


def main() -> int:
    try:
        README.write_text(with_diagram(README.read_text()))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
