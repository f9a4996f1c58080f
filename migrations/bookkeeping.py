"""What the migrations keep for themselves, and the revision ids others refer to by name.

- ``MIGRATION_TABLES``: ``alembic_version`` is Alembic's; ``alembic_seed_rows`` is the seed
  revision's record of the rows it inserted; ``alembic_backfills`` holds a batched backfill's
  progress while it runs (migrations/operations.py). Autogenerate must not offer to drop them, and the
  catalog checks compare everything else.
- ``MIGRATION_LOCK_KEY``: the advisory lock every migrator of this schema takes (env.py), so
  that replicas migrating at deploy time run one after another.
- ``SCHEMA_REVISION``: the revision that creates the tables, before the seed's data migration;
  ``SEED_REVISION``: that data migration.
"""

MIGRATION_TABLES = frozenset({"alembic_version", "alembic_seed_rows", "alembic_backfills"})
# The bytes of "migrate!" as a bigint.
MIGRATION_LOCK_KEY = int.from_bytes(b"migrate!", "big")
SCHEMA_REVISION = "e80b7d113562"
SEED_REVISION = "b8512725b275"
