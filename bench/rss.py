"""Peak memory of one roster path, in a process of its own: ``python -m bench.rss streamed|loaded``.

Reads DATABASE_URL (never a command-line argument, which ``ps`` would show) and prints
JSON: the resident set in KiB before the roster (connected, warmed up) and its peak
during it. Linux only: ru_maxrss would not do, it keeps the peak of the parent that
forked us; /proc/self/status's VmHWM is this process's own, and clear_refs resets it.
"""

import json
import os
import sys
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from migrations.database.url import ENV_VAR, parse_database_url
from models.queries import iter_roster, roster


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def main(mode: str) -> None:
    with Session(create_engine(parse_database_url(os.environ[ENV_VAR]))) as session:
        session.execute(text("SELECT 1"))
        Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from here
        before = status_kib("VmRSS")
        if mode == "streamed":
            students = sum(1 for _ in iter_roster(session))
        else:
            loaded = roster(session)  # held, as a caller of roster() holds it
            students = sum(1 for student in loaded if student.courses is not None)
        print(
            json.dumps(
                {"mode": mode, "students": students, "before_kib": before, "peak_kib": status_kib("VmHWM")}
            )
        )


if __name__ == "__main__":
    main(sys.argv[1])
