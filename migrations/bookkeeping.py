"""Tables that belong to the migrations, not to the models.

``alembic_version`` is Alembic's; ``alembic_seed_rows`` is the seed revision's record of
the rows it inserted. Autogenerate must not offer to drop them, and the catalog checks
compare everything else.
"""

MIGRATION_TABLES = frozenset({"alembic_version", "alembic_seed_rows"})
