"""Run in a previous release's tree (its modules first on sys.path): what its models map, and its code.

    cd <the release's tree> && DATABASE_URL=... python -c \\
        "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')" \\
        release_probe.py <fallback exercise.py>

Prints one JSON object: the tables and columns the release's models map (what its code reads
and writes) and which class maps each table, then what failed when its own exercise ran
(migrations/gate/exercise.py of that release, else the fallback given). Imports nothing of the
current tree: it is run by path, and only the release's tree and the installed packages are on
sys.path.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import io
import json
import os
import runpy
import sys
from collections.abc import Callable
from typing import Any


def mapped() -> dict[str, dict[str, Any]]:
    """{table: {"owner": "module.Class", "columns": {column: {"nullable": bool}}}} of the release's models."""
    models = importlib.import_module("models")
    owners: dict[str, str] = {}
    for name, module in sorted(sys.modules.items()):
        if name != "models" and not name.startswith("models."):
            continue
        for attribute, value in inspect.getmembers(module):
            if inspect.isclass(value) and value.__module__ == name and hasattr(value, "__table__"):
                owners[value.__table__.name] = f"{name}.{value.__qualname__}"  # a mapped class
            elif type(value).__name__ == "Table" and name != "models":
                owners.setdefault(value.name, f"{name}.{attribute}")  # a Core table
    return {
        table.name: {
            "owner": owners.get(table.name, f"models.metadata.tables[{table.name!r}]"),
            "columns": {column.name: {"nullable": bool(column.nullable)} for column in table.columns},
        }
        for table in models.metadata.sorted_tables
    }


def exercise(fallback: str) -> tuple[str, Callable[[str], list[str]]]:
    own = "migrations.gate.exercise"
    with contextlib.suppress(ModuleNotFoundError):
        if importlib.util.find_spec(own) is not None:
            return "its own migrations/gate/exercise.py", importlib.import_module(own).run
    return "the current release's exercise.py (it has none of its own)", runpy.run_path(fallback)["run"]


def main() -> None:
    found: dict[str, Any] = {}
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            found["uses"] = mapped()
            found["exercise"], run = exercise(sys.argv[1])
            found["failures"] = run(os.environ["DATABASE_URL"])
        except Exception as error:  # noqa: BLE001 - reported to the gate, which says what failed
            found["error"] = (
                f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ''}"
            )
    print(json.dumps(found))


if __name__ == "__main__":
    main()
