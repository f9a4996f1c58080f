"""Lint each revision's offline SQL with squawk: ``uv run python -m migrations.lint``.

Each revision is rendered alone, ``alembic upgrade <down_revision>:<revision> --sql``, so
squawk sees what one deploy runs, with env.py's ``SET lock_timeout``, ``SET
statement_timeout`` and transaction around it. No database is needed. Rules and the
PostgreSQL version squawk judges by are in .squawk.toml.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import Script

from migrations import SCRIPT_LOCATION
from migrations.history import scripts

SQUAWK_CONFIG = SCRIPT_LOCATION.parent / ".squawk.toml"
# alembic creates its own table, the same in every project, before the first revision; its
# varchar column is alembic's choice, not a revision's, so squawk does not see it.
ALEMBIC_VERSION_TABLE = re.compile(r"CREATE TABLE alembic_version \(.*?\);\n", re.DOTALL)
# squawk's readable (tty) report colours and hyperlinks rule names even into a pipe.
TERMINAL_ESCAPES = re.compile(r"\x1b\[[0-9;]*m|\x1b\]8;;[^\x1b]*\x1b\\")


@dataclass(frozen=True)
class LintReport:
    passed: bool
    text: str


def offline_sql(script_location: Path, script: Script) -> str:
    buffer = io.StringIO()
    config = Config(output_buffer=buffer)
    config.set_main_option("script_location", str(script_location))
    command.upgrade(config, f"{script.down_revision or 'base'}:{script.revision}", sql=True)
    return ALEMBIC_VERSION_TABLE.sub("", buffer.getvalue())


def lint(script_location: Path = SCRIPT_LOCATION) -> LintReport:
    """squawk's verdict and report on every revision in `script_location`, base first."""
    squawk = Path(sysconfig.get_path("scripts")) / "squawk"
    with tempfile.TemporaryDirectory() as directory:
        files = []
        for script in scripts(script_location):
            sql = Path(directory) / Path(script.path).with_suffix(".sql").name
            sql.write_text(offline_sql(script_location, script))
            files.append(sql.name)
        result = subprocess.run(
            [str(squawk), "--config", str(SQUAWK_CONFIG), "--reporter", "tty", *files],
            cwd=directory,
            capture_output=True,
            text=True,
            check=False,
        )
    return LintReport(result.returncode == 0, TERMINAL_ESCAPES.sub("", result.stdout + result.stderr).strip())


def main() -> int:
    report = lint()
    print(report.text, file=sys.stdout if report.passed else sys.stderr)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
