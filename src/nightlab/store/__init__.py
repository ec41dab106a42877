"""The lab's state: `.nightlab/state.db`, SQLite through SQLAlchemy 2, schema by Alembic.

- :mod:`nightlab.store.db` — :class:`Store`: transactions for every writer.
- :mod:`nightlab.store.models` — the tables.
- :mod:`nightlab.store.read` — fast read-only views (stdlib sqlite3).

This package file imports nothing, so reading a view never pays for SQLAlchemy.
"""
