"""DATABASE_URL, read and checked without touching any server.

``postgresql://``, ``postgres://``, ``postgresql+psycopg://`` and ``postgresql+psycopg2://`` are
accepted, in any case; every form is driven by psycopg 3. Errors raised here are one line and
never contain a password, nor any part of one.
"""

from __future__ import annotations

import os
import re
from urllib.parse import quote

from psycopg.conninfo import make_conninfo
from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError

ENV_VAR = "DATABASE_URL"
# The psycopg2 form has the same meaning (libpq's parameters), so it is safe to drive with psycopg 3.
ACCEPTED_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2")
EXAMPLE = "postgresql://user:password@host:5432/dbname"
AT_HINT = "write an @ in a user name or password as %40 (postgresql://user:p%40ss@host:5432/dbname)"
# libpq waits forever for a server that accepts and never answers; a URL's own value wins.
CONNECT_TIMEOUT = "10"
QUERY_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class DatabaseUrlError(ValueError):
    """DATABASE_URL cannot name a PostgreSQL database; the message is safe to print."""


def parse_database_url(raw: str) -> URL:
    """Normalize a PostgreSQL URL to SQLAlchemy's psycopg 3 form, with a connect timeout.

    A ``password`` query parameter moves into the URL's password, where every rendering masks it.
    """
    if not raw.strip():
        raise DatabaseUrlError(
            f"{ENV_VAR} is empty: unset it to use the embedded PostgreSQL, or set it to {EXAMPLE}"
        )
    # The parser ends a password at its first @: the rest would be taken, and shown, as the host.
    if raw.split("?", 1)[0].count("@") > 1:
        raise DatabaseUrlError(f"{ENV_VAR} is not a valid URL: {AT_HINT}")
    try:
        url = make_url(raw.strip())
        url.port  # noqa: B018 - a non-numeric port only fails when read
    except (ArgumentError, ValueError):
        raise DatabaseUrlError(f"{ENV_VAR} is not a valid URL: expected {EXAMPLE}") from None
    scheme = url.drivername.lower()
    if scheme not in ACCEPTED_SCHEMES:
        raise DatabaseUrlError(wrong_scheme(scheme))
    if not url.database:
        raise DatabaseUrlError(f"{ENV_VAR} names no database: expected {EXAMPLE}")
    if not all(QUERY_KEY.fullmatch(key) for key in url.query):
        raise DatabaseUrlError(f"{ENV_VAR} is not a valid URL: a query parameter's name is not a word")
    password = url.query.get("password")
    if isinstance(password, str):
        url = url.difference_update_query(["password"]).set(password=password)
    return with_connect_timeout(url.set(drivername="postgresql+psycopg"))


def wrong_scheme(scheme: str) -> str:
    backend, _, driver = scheme.partition("+")
    if backend in ("postgresql", "postgres"):
        return (
            f"{ENV_VAR} asks for the {driver!r} driver: this project drives PostgreSQL through "
            f"psycopg 3, write postgresql:// ({EXAMPLE})"
        )
    return f"{ENV_VAR} names a {backend!r} database: this project requires PostgreSQL ({EXAMPLE})"


def with_connect_timeout(url: URL) -> URL:
    """`url` with libpq's connect_timeout, unless it or PGCONNECT_TIMEOUT already sets one."""
    if "connect_timeout" in url.query or "PGCONNECT_TIMEOUT" in os.environ:
        return url
    return url.update_query_dict({"connect_timeout": CONNECT_TIMEOUT})


def url_from_environment() -> URL | None:
    """DATABASE_URL, parsed; None when it is unset (the embedded PostgreSQL's case)."""
    raw = os.environ.get(ENV_VAR)
    return None if raw is None else parse_database_url(raw)


def shown(url: URL) -> str:
    """`url` as a person may read it: every password masked, a socket directory left readable."""
    base = url.set(query={}).render_as_string(hide_password=True)
    params = [
        f"{key}={'***' if 'password' in key.lower() else quote(value, safe='/')}"
        for key, values in url.query.items()
        for value in ((values,) if isinstance(values, str) else values)
    ]
    return base + ("?" + "&".join(params) if params else "")


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
