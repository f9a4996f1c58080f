"""DATABASE_URL, read and checked without touching any server.

``postgresql://``, ``postgres://`` and ``postgresql+psycopg://`` are accepted; every form is
driven by psycopg 3. Errors raised here are one line and never contain a password.
"""

from __future__ import annotations

import os

from psycopg.conninfo import make_conninfo
from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError

ENV_VAR = "DATABASE_URL"
ACCEPTED_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
EXAMPLE = "postgresql://user:password@host:5432/dbname"


class DatabaseUrlError(ValueError):
    """DATABASE_URL cannot name a PostgreSQL database; the message is safe to print."""


def parse_database_url(raw: str) -> URL:
    """Normalize a PostgreSQL URL to SQLAlchemy's psycopg 3 form."""
    if not raw.strip():
        raise DatabaseUrlError(
            f"{ENV_VAR} is empty: unset it to use the embedded PostgreSQL, or set it to {EXAMPLE}"
        )
    try:
        url = make_url(raw.strip())
        url.port  # noqa: B018 - a non-numeric port only fails when read
    except (ArgumentError, ValueError):
        raise DatabaseUrlError(f"{ENV_VAR} is not a valid URL: expected {EXAMPLE}") from None
    if url.drivername not in ACCEPTED_SCHEMES:
        raise DatabaseUrlError(
            f"{ENV_VAR} names a {url.get_backend_name()!r} database: "
            f"this project requires PostgreSQL ({EXAMPLE})"
        )
    if not url.database:
        raise DatabaseUrlError(f"{ENV_VAR} names no database: expected {EXAMPLE}")
    return url.set(drivername="postgresql+psycopg")


def url_from_environment() -> URL | None:
    """DATABASE_URL, parsed; None when it is unset (the embedded PostgreSQL's case)."""
    raw = os.environ.get(ENV_VAR)
    return None if raw is None else parse_database_url(raw)


def conninfo(url: URL) -> str:
    """The libpq connection string for `url`, for psycopg and psql."""
    return make_conninfo(**libpq_params(url))


def libpq_params(url: URL) -> dict[str, str]:
    params = {
        "host": url.host,
        "port": str(url.port) if url.port else None,
        "user": url.username,
        "password": url.password,
        "dbname": url.database,
        **{key: str(value) for key, value in url.query.items()},
    }
    return {key: value for key, value in params.items() if value}
