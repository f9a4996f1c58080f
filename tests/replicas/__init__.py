"""Replica tests: a real primary with hot standbys (tests/helpers/replication.py)."""

import pytest

from tests.helpers.replication import install_id, installed_postgres

# For a test of our code rather than of PostgreSQL's (a refusal, a message): the embedded
# default's PostgreSQL only, not every installed one.
embedded_postgres_only = pytest.mark.parametrize(
    "cluster", installed_postgres()[:1], indirect=True, ids=install_id
)
