"""The state database: Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

import sqlite3

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from nightlab.store.db import HEAD_REVISION, MIGRATIONS, Meta, Run, Store
from nightlab.store.models import Base

TABLES = {"runs", "cycles", "decisions", "trials", "events", "meta", "todos", "notes",
          "papers", "paper_ids", "paper_queries"}  # fmt: skip



def revision_of(path) -> list[tuple[str]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT version_num FROM alembic_version").fetchall()


def test_migrate_creates_every_table(store):
    assert store.path.is_file()
    with store.engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
    assert tables == TABLES | {"alembic_version"}
    assert revision_of(store.path) == [(HEAD_REVISION,)]


def test_head_revision_constant_matches_the_migration_scripts():
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_heads() == [HEAD_REVISION]


def test_migrated_schema_matches_the_models(store):
    assert set(Base.metadata.tables) == TABLES
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_migrate_twice_is_a_no_op_and_keeps_data(store):
    with store.tx() as s:
        Store.set_meta(s, "base_commit", "abc123")
    with sqlite3.connect(store.path) as conn:
        schema = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    store.migrate()
    again = Store(store.path)
    again.migrate()
    again.close()
    with sqlite3.connect(store.path) as conn:
        assert conn.execute(
            "SELECT type, name, sql FROM sqlite_master ORDER BY name"
        ).fetchall() == (schema)
    assert revision_of(store.path) == [(HEAD_REVISION,)]
    with store.tx() as s:
        assert Store.get_meta(s, "base_commit") == "abc123"


def test_database_uses_wal_journal(store):
    with store.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    with sqlite3.connect(store.path) as conn:  # WAL is a property of the file itself
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_transactions_commit_or_roll_back_whole(store):
    with store.tx() as s:
        Store.set_meta(s, "a", {"x": [1, 2]})
    with pytest.raises(RuntimeError), store.tx() as s:
        Store.set_meta(s, "a", "overwritten")
        Store.set_meta(s, "b", 2)
        raise RuntimeError("boom")
    with store.tx() as s:
        assert Store.get_meta(s, "a") == {"x": [1, 2]}
        assert Store.get_meta(s, "b", "absent") == "absent"
        assert s.get(Meta, "b") is None


def test_new_rows_get_their_model_defaults(store):
    with store.tx() as s:
        s.add(Run(lab="t", pid=1, host="h", state="running", started_at=1.0, heartbeat_at=1.0))
    with store.tx() as s:
        run = s.get(Run, 1)
        assert run.stop_requested is False
        assert run.options == {}


def test_a_first_schema_store_upgrades_with_its_data(tmp_path):
    from alembic import command
    from alembic.config import Config as AlembicConfig

    store = Store(tmp_path / "state.db")
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO runs (lab, pid, host, state, started_at, heartbeat_at, "
            "stop_requested, options) VALUES ('old', 1, 'h', 'finished', 0, 0, 0, '{}')"
        )
    store.migrate()
    with store.tx() as s:
        assert [r.lab for r in s.query(Run)] == ["old"]
    with store.engine.begin() as conn:
        version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        tables = {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master")}
    assert version == HEAD_REVISION == "0007"
    assert {"todos", "notes", "ix_trials_kind", "ix_trials_scatter"} <= tables
    with store.engine.begin() as conn:  # 0006: a pruned trial's record
        columns = {r[1] for r in conn.exec_driver_sql("PRAGMA table_info(trials)")}
    assert "pruning" in columns
    assert {"papers", "paper_ids", "paper_queries", "ix_paper_queries_source_query"} <= tables
