"""The lab's state: `.nightlab/state.db`, SQLite through SQLAlchemy 2, schema by Alembic, and
the files beside it. Every query and every `.nightlab/...` path is written here.

- :mod:`nightlab.store.db` — :class:`Store`: transactions for every writer.
- :mod:`nightlab.store.models` — the tables.
- :mod:`nightlab.store.kinds` — the trials' kinds, statuses, verdicts; `interrupted()`.
- :mod:`nightlab.store.read` — fast read-only views (stdlib sqlite3).
- :mod:`nightlab.store.queries` — the other read queries (report, finish-up, loop).
- :mod:`nightlab.store.paths` — :class:`LabPaths`: where everything lives.
- :mod:`nightlab.store.files` — the atomic write, the log tail, the loop lock's owner.
- :mod:`nightlab.store.folder` — a trial's folder (params.json, result.json, ...).

This package file imports nothing, so reading a view never pays for SQLAlchemy.
"""
