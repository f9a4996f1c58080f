"""Check 1: the schema `alembic upgrade head` builds is the schema the models declare.

`alembic check` compares only what autogenerate can see; this compares PostgreSQL's own
catalog, so a CHECK expression, an ON DELETE rule, an index definition or identity
options that differ are caught too.
"""

import pytest
from catalog import catalog, created_from, models_vs_migrations
from sqlalchemy import URL

from models import Base

pytestmark = pytest.mark.migrations


def test_upgrade_head_builds_exactly_the_catalog_the_models_declare(
    server_url: URL, head_template: str, make_database
) -> None:
    migrated = server_url.set(database=head_template)
    assert catalog(migrated), "the snapshot queries found nothing at head"
    diff = models_vs_migrations(created_from(Base.metadata, make_database()), migrated)
    assert not diff, f"migrations and models disagree:\n{diff}"
