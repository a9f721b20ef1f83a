"""The results store's tables, and bringing an older store's tables up to date.

Schema 1 (aeframe 0.1.0) kept one row per cell in ``cells``: running a cell again replaced its
row, so a failed rerun destroyed a finished result. Schema 2 keeps every attempt in ``attempts``
(one row per run of a cell, in the order they were saved) and offers ``cells`` as a view of the
attempt that counts for each key, so the SQL written against schema 1 still reads sensibly.
"""
from __future__ import annotations

import sqlite3

FORMAT_MARKER = "aeframe-results"
SCHEMA_VERSION = 2

ATTEMPT_COLUMNS = (
    "key, status, label, dataset, seed, config, error, metrics, stats, curve, started_at, finished_at"
)

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    id          INTEGER PRIMARY KEY,
    key         TEXT NOT NULL,
    status      TEXT NOT NULL,
    label       TEXT NOT NULL,
    dataset     TEXT NOT NULL,
    seed        INTEGER,
    config      TEXT NOT NULL,
    error       TEXT,
    metrics     TEXT NOT NULL,
    stats       TEXT NOT NULL,
    curve       TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS samples (
    key             TEXT PRIMARY KEY,
    indices         TEXT NOT NULL,
    shape           TEXT NOT NULL,
    originals       BLOB NOT NULL,
    reconstructions BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_by_key ON attempts (key, status);
CREATE INDEX IF NOT EXISTS attempts_by_finished_at ON attempts (finished_at);
CREATE INDEX IF NOT EXISTS attempts_by_dataset_label ON attempts (dataset, label);
CREATE VIEW IF NOT EXISTS cells AS
    SELECT key, status, label, dataset, seed, config, error, metrics, stats, curve, started_at, finished_at
    FROM attempts AS a
    WHERE a.id = (SELECT b.id FROM attempts AS b WHERE b.key = a.key
                  ORDER BY b.status = 'done' DESC, b.id DESC LIMIT 1);
"""


def attempts_table(version: int) -> str:
    """The table that holds the attempts in a store of schema ``version`` (1: one per key)."""
    return "cells" if version == 1 else "attempts"


def prepare(conn: sqlite3.Connection, version: int) -> None:
    """Give ``conn``'s database the current schema, inside the caller's transaction.

    ``version`` is the one found in the file: 0 for an empty database, 1 for a store of aeframe
    0.1.0, whose rows move into ``attempts`` in their order (oldest ``finished_at`` first).
    """
    if version == 1:
        _create(conn)
        conn.execute(f"INSERT INTO attempts ({ATTEMPT_COLUMNS}) "
                     f"SELECT {ATTEMPT_COLUMNS} FROM cells ORDER BY finished_at, rowid")
        conn.execute("DROP TABLE cells")  # its indexes go with it
    _create(conn)
    conn.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('format', ?)", (FORMAT_MARKER,))
    conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))


def _create(conn: sqlite3.Connection) -> None:
    for statement in _TABLES.split(";"):
        if statement.strip():
            conn.execute(statement)
