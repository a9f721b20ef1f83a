"""The results store: one SQLite file holding every attempt of every benchmark cell.

Every attempt is committed on its own as soon as it ends, so a run that is interrupted (Ctrl-C,
SIGKILL, a power cut) keeps every cell but the one in flight, and the next run skips what is
already done. Attempts are only ever added: running a cell again (``--rerun``, or after a
failure) never removes a finished result. The file is self-describing (a ``meta`` table with a
marker and a schema version) so that a mistyped ``--store`` never turns someone else's database
into ours. :mod:`aeframe.store.schema` has the tables, :mod:`aeframe.store.lock` the writer's
lock, :mod:`aeframe.store.rows` the conversion of rows to records.

Reading never leaves a file behind: a store that no writer has open is read as an immutable
file (SQLite then creates no ``-wal``/``-shm`` files and needs none, so a store on a read-only
directory or mount reads too), and one that a bench is writing is read through SQLite's shared
write-ahead log.
"""
from __future__ import annotations

import errno
import json
import os
import sqlite3
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from aeframe.cells.record import DONE, CellRecord
from aeframe.cells.samples import Samples
from aeframe.console import say
from aeframe.errors import StoreError
from aeframe.store.lock import WriterLock
from aeframe.store.rows import BadRow, attempt_row, check_samples_row, record_of, samples_of, samples_row
from aeframe.store.schema import ATTEMPT_COLUMNS, FORMAT_MARKER, SCHEMA_VERSION, attempts_table, prepare

__all__ = ["FORMAT_MARKER", "SCHEMA_VERSION", "Store"]

_SQLITE_HEADER = b"SQLite format 3\x00"
_BUSY_TIMEOUT_MS = 10_000


def _warning(message: str) -> None:
    say(f"warning: {message}")


class Store:
    """A results store at ``path``.

    With ``write=True`` (the default) a missing file is created with the schema, a store of an
    older schema is brought up to date, and the store is locked against other writers until
    :meth:`close`. With ``write=False`` the file must already exist and is only read (nothing is
    written, migrated or locked), so ``aeframe report`` can read a store while a benchmark is
    still writing it. ``warn`` receives one line per stored row that cannot be read (such rows
    are left out) and about a store file that vanished during a run; by default it goes to stderr.
    """

    def __init__(self, path: str | Path, *, write: bool = True, warn: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self.write = write
        self._name = str(path)
        self._warn = warn or _warning
        self._lock: WriterLock | None = None
        self._conn: sqlite3.Connection | None = None
        self._version = 0  # of the open file's schema; 0 while it has none
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file the writer opened
        self._immutable: tuple | None = None  # the file's state when a reader opened it as immutable
        self._held: list[CellRecord] = []  # what this writer found or saved: saved again if the file vanishes
        self.replaced: str | None = None  # the warning given if the file vanished during this run

        self._real = self._resolve()
        self._check_existing_file()
        try:
            if not write:
                self._open_reader()
                return
            self._make_parent()
            self._lock = WriterLock(self._real, self._name)
            self._open_writer()
        except BaseException:
            self.close()
            raise

    # -- opening -------------------------------------------------------------------------------

    def _resolve(self) -> Path:
        # The real file, whichever symbolic links lead to it: its lock and its identity.
        try:
            return Path(os.path.realpath(self.path))
        except OSError as e:
            raise self._unusable(e) from None

    def _unusable(self, e: OSError) -> StoreError:
        reason = e.strerror or str(e)
        if e.errno == errno.ENAMETOOLONG:
            reason += ": a file name has at most 255 bytes"
        return StoreError(f"cannot use {self._name} as a results store ({reason}); pass --store with another path")

    def _check_existing_file(self) -> None:
        """Refuse a path that is clearly not ours before SQLite (or a lock file) touches anything."""
        try:
            info = os.stat(self._real)
        except FileNotFoundError:
            if not self.write:
                raise StoreError(
                    f"no results store at {self._name}; run aeframe bench first or pass --store"
                ) from None
            return
        except OSError as e:
            raise self._unusable(e) from None
        if not stat.S_ISREG(info.st_mode):
            raise StoreError(
                f"{self._name} is not a file, so it cannot be a results store; "
                "pass --store with a file path"
            )
        try:
            with open(self._real, "rb") as f:
                header = f.read(len(_SQLITE_HEADER))
        except OSError as e:
            raise StoreError(f"cannot read {self._name} ({e.strerror}); check its permissions") from e
        # An empty file is what `touch` leaves behind: fine to turn into a store.
        if header and header != _SQLITE_HEADER:
            raise self._not_ours("not an SQLite file")
        if header:
            # Look inside as a reader first, so that a foreign database is never altered, and
            # no lock file (nor -wal/-shm file) is left next to it.
            probe, _ = self._connect_reader()
            try:
                self._inspect(probe)
            finally:
                probe.close()

    def _make_parent(self) -> None:
        try:
            self._real.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(
                f"cannot create the directory {self._real.parent} for {self._name} ({e.strerror}); "
                "pass --store with a path in a writable directory"
            ) from None

    def _connect(self, mode: str, *, immutable: bool = False) -> sqlite3.Connection:
        uri = f"{self._real.as_uri()}?mode={mode}" + ("&immutable=1" if immutable else "")
        try:
            # Autocommit at the driver level: transactions are opened explicitly where needed.
            conn = sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        except sqlite3.Error as e:
            raise self._failed("open", e) from None
        return conn

    def _connect_reader(self) -> tuple[sqlite3.Connection, tuple | None]:
        """A read-only connection, and the file's state if it was opened as immutable.

        A write-ahead log next to the file means a writer may have it open (or was killed with
        it open): then SQLite's shared log must be used, and its files exist already. Without
        one no writer is active, and an immutable read creates no files and needs none.
        """
        if os.path.lexists(f"{self._real}-wal"):
            if not os.path.lexists(f"{self._real}-shm") and not os.access(self._real.parent, os.W_OK):
                # SQLite would need to create the log's index there, and cannot.
                raise StoreError(
                    f"cannot read {self._name}: part of it is in {self._name}-wal, which SQLite can only open by "
                    f"creating {self._name}-shm, and its directory is read-only; copy both files to a writable "
                    "directory and pass --store with the copy"
                )
            return self._connect("ro"), None
        state = self._file_state()
        return self._connect("ro", immutable=True), state

    def _file_state(self) -> tuple:
        try:
            info = os.stat(self._real)
        except OSError:
            return ()
        return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, os.path.lexists(f"{self._real}-wal")

    def _open_reader(self) -> None:
        self._conn, self._immutable = self._connect_reader()
        self._version = self._inspect(self._conn)

    def _open_writer(self) -> None:
        if os.path.exists(self._real) and not os.access(self._real, os.W_OK):
            raise StoreError(f"{self._name} is read-only; make it writable (chmod u+w {self._name}) "
                             "or pass --store with another file")
        self._conn = conn = self._connect("rwc")
        found = self._inspect(conn)
        try:
            if found:
                self._check_intact(conn)
            with _transaction(conn):
                prepare(conn, found)
            # WAL lets `aeframe report` read while a bench writes, and makes each commit one append.
            # Set after the schema, so that a store whose update failed is left exactly as it was.
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.Error as e:
            raise self._failed("create" if not found else "update", e) from None
        self._version = SCHEMA_VERSION
        self._identity = self._file_identity()

    def _check_intact(self, conn: sqlite3.Connection) -> None:
        # Found now, not after hours of training when the first result cannot be saved.
        problems = [row[0] for row in conn.execute("PRAGMA quick_check(1)")]
        if problems != ["ok"]:
            raise StoreError(f"{self._name} is damaged ({problems[0]}); restore it from a backup "
                             "or pass --store with another file")

    def _inspect(self, conn: sqlite3.Connection) -> int:
        """The schema version of the store ``conn`` has open, 0 if the database is empty; StoreError otherwise."""
        try:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:
                return 0
            if "meta" not in tables:
                raise self._not_ours("no aeframe marker")
            meta = dict(conn.execute("SELECT name, value FROM meta"))
        except sqlite3.DatabaseError as e:
            raise self._not_ours(f"unreadable: {e}") from e
        if meta.get("format") != FORMAT_MARKER:
            raise self._not_ours("no aeframe marker")
        try:
            version = int(meta.get("schema_version", ""))
        except ValueError:
            raise self._not_ours("no schema version") from None
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self._name} was written by a newer aeframe (results schema {version}, this "
                f"aeframe reads up to {SCHEMA_VERSION}); upgrade aeframe to use it"
            )
        if version < 1:
            raise self._not_ours(f"unknown schema version {version}")
        return version

    def _not_ours(self, why: str) -> StoreError:
        return StoreError(
            f"{self._name} is not an aeframe results store ({why}); pass --store with another file"
        )

    def _failed(self, doing: str, e: sqlite3.Error) -> StoreError:
        """A one-line error for an SQLite failure: what was being done, SQLite's words, and the way out."""
        text = str(e)
        if "full" in text or "disk I/O" in text:
            fix = "make room on its disk or pass --store with a file on another disk"
        elif "readonly" in text or "read-only" in text or "unable to open" in text:
            fix = "make the file and its directory writable, or pass --store with another file"
        elif "malformed" in text or "not a database" in text:
            fix = "the file is damaged: restore it from a backup or pass --store with another file"
        elif "locked" in text or "busy" in text:
            fix = "another program has it open; close that program or pass --store with another file"
        else:
            fix = "check the file and its directory, or pass --store with another file"
        what = "a result to" if doing == "save" else "the results store" if doing == "create" else ""
        return StoreError(f"cannot {doing} {what + ' ' if what else ''}{self._name} ({text}); {fix}")

    # -- reading -------------------------------------------------------------------------------

    def _read(self, query: str, params: tuple = ()) -> list[tuple]:
        """All rows of ``query``; read again through SQLite's log if a writer opened the file meanwhile."""
        try:
            rows = self._db.execute(query, params).fetchall()
            if self._immutable is not None and self._file_state() != self._immutable:
                # An immutable read assumes nobody writes; a bench that started meanwhile might.
                self._db.close()
                self._conn, self._immutable = self._connect("ro"), None
                rows = self._db.execute(query, params).fetchall()
        except sqlite3.Error as e:
            raise self._failed("read", e) from None
        return rows

    def _record(self, row: tuple) -> CellRecord | None:
        """The record of an attempt row (its rowid last), or None with a warning when it is unreadable."""
        try:
            return record_of(row[:-1])
        except BadRow as e:
            self._warn(f"{self._name}: left out the attempt of cell {row[0]} (row {row[-1]}): {e}; "
                       "fix or delete that row")
            return None

    @property
    def _attempts(self) -> str:
        return attempts_table(self._version)

    def find_done(self, key: str) -> CellRecord | None:
        """The latest attempt under ``key`` that finished with status ``done``, else None."""
        if not self._version:
            return None
        rows = self._read(f"SELECT {ATTEMPT_COLUMNS}, rowid FROM {self._attempts} "
                          "WHERE key = ? AND status = ? ORDER BY rowid DESC", (key, DONE))
        for row in rows:
            record = self._record(row)
            if record is not None:
                if self.write:
                    self._held.append(record)
                return record
        return None

    def records(self) -> list[CellRecord]:
        """Every readable attempt, oldest ``finished_at`` first (then in the order they were saved)."""
        return [record for _, record in self.attempts()]

    def attempts(self) -> list[tuple[int, CellRecord]]:
        """Every readable attempt with its row id, in the order of :meth:`records`."""
        if not self._version:
            return []
        rows = self._read(f"SELECT {ATTEMPT_COLUMNS}, rowid FROM {self._attempts} ORDER BY finished_at, rowid")
        return [(row[-1], record) for row in rows if (record := self._record(row)) is not None]

    def samples(self, keys: Iterable[str]) -> dict[str, Samples]:
        """Key -> the sample reconstructions of that cell's latest done attempt, for those of ``keys`` that have them."""
        return {key: samples_of(row) for key, row in self.sample_rows(keys).items()}

    def sample_rows(self, keys: Iterable[str]) -> dict[str, tuple]:
        """Like :meth:`samples`, but each cell's stored ``samples`` row, checked and not decoded (no torch)."""
        if not self._version:
            return {}
        # A store from before the table existed, opened read-only, does not have it.
        if not self._read("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'samples'"):
            return {}
        # One JSON parameter instead of one placeholder per key: no limit on how many.
        rows = self._read("SELECT key, indices, shape, originals, reconstructions FROM samples "
                          "WHERE key IN (SELECT value FROM json_each(?))", (json.dumps(list(keys)),))
        found = {}
        for row in rows:
            try:
                check_samples_row(row)
            except BadRow as e:
                self._warn(f"{self._name}: left out the sample images of cell {row[0]}: {e}")
            else:
                found[row[0]] = row
        return found

    # -- writing -------------------------------------------------------------------------------

    def save(self, record: CellRecord) -> None:
        """Commit ``record`` as a new attempt of its cell; earlier attempts are kept."""
        if not self.write:
            raise StoreError(f"{self._name} was opened read-only; open it with write=True to save")
        self._check_still_there()
        try:
            with _transaction(self._db):
                self._insert(record)
        except sqlite3.Error as e:
            # Disk full, read-only file system, a lock held by a non-aeframe program, ...
            raise self._failed("save", e) from None
        self._held.append(record)

    def append(self, order: Sequence[int | CellRecord], samples: Mapping[str, tuple | None]) -> None:
        """Put attempts after all others, in the order given, and set sample images: one transaction.

        An ``int`` in ``order`` is the row id of an attempt of this store, which moves, unchanged, to
        a new row id after every other; a record is added as a new attempt (its ``samples`` are not
        saved). Then each key in ``samples`` gets that ``samples`` row (as :meth:`sample_rows` gives
        it), or none where it maps to None. This lets ``aeframe merge`` make the row ids of each
        cell's attempts follow their ``finished_at``, the order the ``cells`` view, :meth:`find_done`
        and the report agree on.
        """
        if not self.write:
            raise StoreError(f"{self._name} was opened read-only; open it with write=True to save")
        self._check_still_there()
        try:
            with _transaction(self._db):
                for item in order:
                    if isinstance(item, CellRecord):
                        row = attempt_row(item)
                        self._db.execute(f"INSERT INTO attempts ({ATTEMPT_COLUMNS}) "
                                         f"VALUES ({', '.join('?' * len(row))})", row)
                    else:
                        self._db.execute("UPDATE attempts SET id = (SELECT max(id) FROM attempts) + 1 "
                                         "WHERE id = ?", (item,))
                for key, row in samples.items():
                    self._db.execute("DELETE FROM samples WHERE key = ?", (key,))
                    if row is not None:
                        self._db.execute("INSERT INTO samples (key, indices, shape, originals, reconstructions) "
                                         "VALUES (?, ?, ?, ?, ?)", (key, *row[1:]))
        except sqlite3.Error as e:
            raise self._failed("save", e) from None

    def _insert(self, record: CellRecord) -> None:
        row = attempt_row(record)
        self._db.execute(f"INSERT INTO attempts ({ATTEMPT_COLUMNS}) VALUES ({', '.join('?' * len(row))})", row)
        if record.status == DONE:
            # The pictures belong to the latest done attempt; a failed one leaves them alone.
            self._db.execute("DELETE FROM samples WHERE key = ?", (record.key,))
            if record.samples is not None:
                self._db.execute(
                    "INSERT INTO samples (key, indices, shape, originals, reconstructions) VALUES (?, ?, ?, ?, ?)",
                    samples_row(record.key, record.samples),
                )

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            info = os.stat(self._real)
        except OSError:
            return None
        return info.st_dev, info.st_ino

    def _check_still_there(self) -> None:
        """If the file was deleted or replaced since it was opened, save this run's results there again.

        SQLite keeps writing to a deleted file without complaint, so a run would otherwise end
        as if all was well while every result it saved is gone.
        """
        if self._identity is None or self._file_identity() == self._identity:
            return
        self._db.close()
        self._conn = None
        if self._lock is not None and not self._lock.still_held():
            self._lock.acquire()
        self._check_existing_file()
        self._open_writer()
        try:
            with _transaction(self._db):
                for record in self._held:
                    self._insert(record)
        except sqlite3.Error as e:
            raise self._failed("save", e) from None
        held = f"the {len(self._held)} results this run holds are" if len(self._held) != 1 else \
            "the 1 result this run holds is"
        self.replaced = (
            f"{self._name} was deleted or replaced during this run: {held} saved again in the file now at that "
            "path, and the run goes on there; the results stored there before this run are lost with the old file"
        )
        self._warn(self.replaced)

    def close(self) -> None:
        """Close the database and release the writer's lock; safe to call twice."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None and self.write and self._conn is not None:
                self._check_still_there()  # deleted after the last save: still this run's loss
        finally:
            self.close()

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self._name} is closed; open a new Store to use it")
        return self._conn


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back if the body raises."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
