"""DATABASE_URL: every PostgreSQL spelling becomes psycopg 3; anything else is refused clearly."""

import pytest

from migrations.database.url import DatabaseUrlError, parse_database_url


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
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
        ("postgresql+asyncpg://u:hunter2@localhost/school", "requires PostgreSQL"),
        ("postgresql://u:hunter2@localhost", "names no database"),
    ],
)
def test_a_bad_url_gets_one_line_that_never_shows_the_password(raw: str, message: str) -> None:
    with pytest.raises(DatabaseUrlError, match=message) as raised:
        parse_database_url(raw)

    assert "hunter2" not in str(raised.value)
    assert "\n" not in str(raised.value)
