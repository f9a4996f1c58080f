"""DATABASE_URL: every PostgreSQL spelling becomes psycopg 3; anything else is refused clearly."""

import pytest

from migrations.database.url import CONNECT_TIMEOUT, DatabaseUrlError, parse_database_url, shown


@pytest.mark.parametrize(
    "scheme",
    ["postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2", "POSTGRESQL", "Postgres"],
)
def test_every_postgresql_scheme_is_driven_by_psycopg_3(scheme: str) -> None:
    url = parse_database_url(f"{scheme}://app:pw@db.internal:6543/school")

    assert url.drivername == "postgresql+psycopg"
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "app",
        "pw",
        "db.internal",
        6543,
        "school",
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("not a url", "not a valid URL"),
        ("postgresql://u:hunter2@host:port/db", "not a valid URL"),
        ("sqlite:///school.db", "requires PostgreSQL"),
        ("mysql://u:hunter2@localhost/school", "requires PostgreSQL"),
        (
            "postgresql+asyncpg://u:hunter2@localhost/school",
            "drives PostgreSQL through psycopg 3, write postgresql://",
        ),
        (
            "postgresql+pg8000://u:hunter2@localhost/school",
            "drives PostgreSQL through psycopg 3, write postgresql://",
        ),
        ("postgresql://u:hunter2@localhost", "names no database"),
        ("postgresql://u:hun@ter2@localhost/school", "write an @ in a user name or password as %40"),
        ("postgresql://u:hun@ter2/x:y@localhost/school", "write an @ in a user name or password as %40"),
    ],
)
def test_a_bad_url_gets_one_line_that_never_shows_the_password(raw: str, message: str) -> None:
    with pytest.raises(DatabaseUrlError, match=message) as raised:
        parse_database_url(raw)

    for secret in ("hunter2", "hun", "ter2"):
        assert secret not in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_password_in_the_query_becomes_the_urls_password_which_every_rendering_masks() -> None:
    url = parse_database_url("postgresql://app@db/school?password=p%40ss%2Fw%3Ard&sslmode=require")

    assert url.password == "p@ss/w:rd"
    assert "password" not in url.query
    for rendered in (repr(url), str(url), url.render_as_string(), shown(url)):
        assert [part for part in ("p@ss", "p%40ss", "w:rd", "w%3Ard") if part in rendered] == []
    assert (
        shown(url)
        == f"postgresql+psycopg://app:***@db/school?sslmode=require&connect_timeout={CONNECT_TIMEOUT}"
    )


def test_shown_masks_every_password_parameter_and_keeps_a_socket_directory_readable() -> None:
    url = parse_database_url("postgresql://app@/school?host=/run/pg%20sockets&sslpassword=k3y")

    assert (
        shown(url)
        == "postgresql+psycopg://app@/school?host=/run/pg%20sockets&sslpassword=***&connect_timeout=10"
    )


def test_every_url_gets_a_connect_timeout_unless_it_or_pgconnect_timeout_sets_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    assert parse_database_url("postgresql://db/school").query["connect_timeout"] == CONNECT_TIMEOUT
    assert parse_database_url("postgresql://db/school?connect_timeout=3").query["connect_timeout"] == "3"

    monkeypatch.setenv("PGCONNECT_TIMEOUT", "0")
    assert "connect_timeout" not in parse_database_url("postgresql://db/school").query
