"""Run this project's commands (`python -m alembic`, `python -m migrations`) as real processes, cheaply.

A fresh interpreter spends ~1.5 s of CPU importing alembic and SQLAlchemy on this 2-core
machine (PYTHONDONTWRITEBYTECODE=1: every import compiles), and the reliability tests start
dozens of migrators, 8 at a time. Each process here is forked from a multiprocessing
forkserver that has imported them once, then runs the module exactly as ``python -m`` would:
own pid, own environment, own database connection, own exit status, stdout and stderr, so it
can be raced, killed and inspected like any CLI process.

A process can also run in another checkout of this project (a copy, for the embedded server's
tests): it then drops the project's own ``migrations`` and ``models`` modules the forkserver
imported and imports that checkout's, as ``python -m`` run there would.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import runpy
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing import forkserver
from pathlib import Path
from unittest import mock

from sqlalchemy import URL

from migrations import ALEMBIC_INI
from tests.helpers.commands import PROJECT, alembic_env

_context = multiprocessing.get_context("forkserver")
_numbers = itertools.count()


def _start_forkserver() -> None:
    # Python 3.11's forkserver ignores the parent's sys.path; PYTHONPATH carries it there.
    with mock.patch.dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)):
        forkserver.ensure_running()


# What every command imports: the ORM, psycopg, Alembic's commands (the project's own modules are small).
_context.set_forkserver_preload(
    [
        "tests.helpers.forked_cli",
        "alembic.command",
        "alembic.ddl.postgresql",
        "logging.config",
        "psycopg",
        "sqlalchemy.dialects.postgresql.psycopg",
        "sqlalchemy.orm",
    ]
)


def _run_module(module: str, args: list[str], env: dict[str, str], out: str, err: str, checkout: str) -> None:
    os.chdir(checkout)
    if Path(checkout) != PROJECT:
        for name in [name for name in sys.modules if name.split(".")[0] in ("migrations", "models")]:
            del sys.modules[name]
        sys.path.insert(0, checkout)
    os.environ.clear()
    os.environ.update(env)
    for fd, path in ((1, out), (2, err)):
        with Path(path).open("w") as stream:
            os.dup2(stream.fileno(), fd)
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - the process's stdout until it exits
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def message(self) -> list[str]:
        """What the user reads: every output line but Alembic's INFO progress log."""
        return [line for line in self.output.splitlines() if not line.startswith("INFO ")]


class Running:
    def __init__(
        self, module: str, args: list[str], env: dict[str, str], workdir: Path, checkout: Path = PROJECT
    ) -> None:
        number = next(_numbers)
        self.out, self.err = workdir / f"{module}-{number}.out", workdir / f"{module}-{number}.err"
        _start_forkserver()  # not at import: the forkserver imports this module too
        self.process = _context.Process(
            target=_run_module, args=(module, args, env, str(self.out), str(self.err), str(checkout))
        )
        self.process.start()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def kill(self) -> None:
        self.process.kill()

    def finish(self, timeout: float = 60) -> Finished:
        self.process.join(timeout)
        if self.process.exitcode is None:
            self.process.kill()  # a hung command must not outlive its test
            self.process.join()
            raise AssertionError(f"still running after {timeout}s: {self.err.read_text()[-2000:]}")
        return Finished(self.process.exitcode, self.out.read_text(), self.err.read_text())


def start_module(
    module: str, *args: str, url: URL, workdir: Path, env: Mapping[str, str] | None = None
) -> Running:
    return Running(module, list(args), alembic_env(url, env), workdir)


def start_in_checkout(
    checkout: Path, module: str, *args: str, workdir: Path, env: Mapping[str, str] | None = None
) -> Running:
    """`python -m module args` in `checkout`, on its embedded server: no DATABASE_URL, no PG* variables."""
    inherited = {
        k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith(("PG", "MIGRATION_"))
    }
    return Running(module, list(args), {**inherited, **(env or {})}, workdir, checkout)


def start_alembic(
    *args: str, url: URL, workdir: Path, ini: Path = ALEMBIC_INI, env: Mapping[str, str] | None = None
) -> Running:
    return start_module("alembic", "-c", str(ini), *args, url=url, workdir=workdir, env=env)


def run_alembic(
    *args: str, url: URL, workdir: Path, ini: Path = ALEMBIC_INI, env: Mapping[str, str] | None = None
) -> Finished:
    return start_alembic(*args, url=url, workdir=workdir, ini=ini, env=env).finish()
