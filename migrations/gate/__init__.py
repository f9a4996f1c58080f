"""The deploy gate, ``python -m migrations.gate``: what static checks cannot say about a revision.

- ``population.py``: a database loaded at scale, fast (COPY, keys and indexes after).
- ``traffic.py``: the application's traffic, from a process of its own, and its latencies.
- ``lock_sampler.py``: pg_locks read every few milliseconds; ``locks.py``: which modes block.
- ``migrator.py``: ``alembic upgrade`` in process, each statement's locks and files recorded.
- ``report.py``: each statement's report, and the lock budget's rules; ``lock_budget.py`` runs it.
- ``previous_release.py`` (with ``release_probe.py``): the previous release's code on the new
  head; ``exercise.py``: this release's code, as the next release's gate will run it.

The benchmark's live change (bench/live.py) runs on the same pieces.
"""
