"""The access-path and migration benchmark; run it with ``uv run python -m bench``."""
