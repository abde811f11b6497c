"""Durable user feedback and the request log, in SQLite (default) or PostgreSQL.

Two tables, the same in both back ends:

``feedback``: one row per ``POST /v1/feedback``.

==================== ========= ====================================================
column               type      meaning
==================== ========= ====================================================
id                   integer   primary key, increasing
created_at           time      when it was stored (UTC)
kind                 text      ``rating`` or ``preference``
request_ids          JSON list the request ids the feedback is about (1-8; a
                               preference names exactly 2 distinct renders)
versions             JSON list the model version that served each request id, from
                               the request log where it has the id, else as the
                               client sent it, else null
rating               integer   1-5 for a rating, null for a preference
preferred_request_id text      the preferred render (one of request_ids), or null
preferred_version    text      the version that served it, or null
client_id            text      the A/B client id (``X-Client-Id`` or the cookie)
comment              text      optional, at most ``COMMENT_MAX`` characters
user_agent           text      the caller's User-Agent, cut to ``USER_AGENT_MAX``
==================== ========= ====================================================

``requests``: one row per served request that may receive feedback, written by the
ingress through ``record_request``: request_id (primary key), created_at, version,
endpoint (``/v1/master``...), client_id, settings (JSON object by schema name: the
settings the render used), params (JSON object: the request's own parameters, e.g.
target_lufs, ceiling, intensity, genre).

Dataset export (``mixscale feedback export``, ``export_dataset``) writes one record
per feedback row, JSON Lines (``.jsonl``, default) or Parquet (``.parquet``):

``schema`` ("mixscale.feedback/1"), ``id``, ``created_at`` (ISO 8601 UTC), ``kind``,
``rating``, ``request_ids``, ``versions``, ``preferred_request_id``,
``preferred_version``, ``client_id``, ``comment``, ``user_agent``, and ``requests``:
a list parallel to ``request_ids`` of ``{request_id, version, endpoint, created_at,
settings, params}`` objects (null where the request log has no row). In Parquet,
``request_ids`` and ``versions`` are list columns and ``requests`` is a JSON string.
``read_dataset`` reads either back as a list of dicts.

Every query is parameterized. SQLite runs in WAL mode with a busy timeout and
``synchronous=FULL``; every thread of every process gets its own connection, and
writes take ``BEGIN IMMEDIATE``, so concurrent writers from many processes lose
nothing. PostgreSQL (a ``postgresql://`` URL) uses psycopg 3 with one connection per
thread and process.
"""

from __future__ import annotations

import abc

import json
import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from mixscale.errors import MixscaleError

DATASET_SCHEMA = "mixscale.feedback/1"
KINDS = ("rating", "preference")
RATING_RANGE = (1, 5)
COMMENT_MAX = 2000
USER_AGENT_MAX = 512
MAX_REQUEST_IDS = 8
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
BODY_FIELDS = ("kind", "request_ids", "rating", "preferred", "versions", "comment")
ENV_STORE = "MIXSCALE_FEEDBACK_STORE"
DEFAULT_STORE_NAME = "feedback.sqlite3"
BUSY_TIMEOUT_S = 30.0
ID_BATCH = 500
FEEDBACK_COLUMNS = ("id", "created_at", "kind", "request_ids", "versions", "rating", "preferred_request_id",
                    "preferred_version", "client_id", "comment", "user_agent")
REQUEST_COLUMNS = ("request_id", "created_at", "version", "endpoint", "client_id", "settings", "params")


class FeedbackError(MixscaleError):
    """A feedback body or store setting that cannot be used.

    ``field`` names the culprit; ``code`` is the HTTP API's error code
    (``mixscale.serve.errors.CODES``): missing_field, unknown_field, invalid_value or
    out_of_range.
    """

    def __init__(self, message: str, field: str | None = None, code: str = "invalid_value"):
        super().__init__(message)
        self.field = field
        self.code = code


@dataclass(frozen=True)
class Feedback:
    """One validated piece of feedback (what ``parse_feedback`` returns)."""

    kind: str
    request_ids: tuple[str, ...]
    rating: int | None = None
    preferred_request_id: str | None = None
    versions: tuple[str | None, ...] | None = None
    comment: str | None = None
    client_id: str | None = None
    user_agent: str | None = None


# ------------------------------------------------------------------ validation

def parse_feedback(body: Any, client_id: str | None = None, user_agent: str | None = None) -> Feedback:
    """Validate a ``POST /v1/feedback`` JSON body; raise ``FeedbackError`` naming the field.

    Body: ``{"kind": "rating", "request_ids": [id], "rating": 1..5, "comment"?: str}`` or
    ``{"kind": "preference", "request_ids": [a, b], "preferred": a|b, "comment"?: str}``;
    optional ``versions``: the version that served each request id (the request log
    takes precedence where it knows the id).
    """
    if not isinstance(body, Mapping):
        raise FeedbackError(f"the body must be a JSON object, got {type(body).__name__}", None)
    unknown = sorted(set(body) - set(BODY_FIELDS))
    if unknown:
        raise FeedbackError(f"unknown field {unknown[0]!r}; allowed fields: {', '.join(BODY_FIELDS)}", unknown[0],
                            "unknown_field")
    for name in ("kind", "request_ids"):
        if body.get(name) is None:
            raise FeedbackError(f"{name} is missing; a feedback body needs kind and request_ids", name, "missing_field")
    kind = body.get("kind")
    if kind not in KINDS:
        raise FeedbackError(f"kind = {kind!r}; allowed: {' or '.join(KINDS)}", "kind", "out_of_range")
    ids = _request_ids(body.get("request_ids"), kind)
    rating = preferred = None
    if kind == "rating":
        rating = body.get("rating")
        lo, hi = RATING_RANGE
        if isinstance(rating, bool) or not isinstance(rating, int) or not lo <= rating <= hi:
            raise FeedbackError(f"rating = {rating!r}; allowed: an integer from {lo} to {hi}", "rating",
                                "missing_field" if rating is None else "out_of_range")
        if body.get("preferred") is not None:
            raise FeedbackError("preferred is only allowed with kind 'preference'", "preferred")
    else:
        preferred = body.get("preferred")
        if preferred not in ids:
            raise FeedbackError(f"preferred = {preferred!r}; allowed: one of request_ids {list(ids)}", "preferred",
                                "missing_field" if preferred is None else "out_of_range")
        if body.get("rating") is not None:
            raise FeedbackError("rating is only allowed with kind 'rating'", "rating")
    versions = body.get("versions")
    if versions is not None:
        if not isinstance(versions, list) or len(versions) != len(ids):
            raise FeedbackError(f"versions must be a list of {len(ids)} version names or nulls, one per request id",
                                "versions")
        for v in versions:
            if v is not None and (not isinstance(v, str) or not VERSION.match(v)):
                raise FeedbackError(f"versions: {v!r} is not a version name (1-64 letters, digits, . _ -)", "versions")
        versions = tuple(versions)
    comment = body.get("comment")
    if comment is not None:
        if not isinstance(comment, str):
            raise FeedbackError(f"comment must be a string, got {type(comment).__name__}", "comment")
        if len(comment) > COMMENT_MAX:
            raise FeedbackError(f"comment has {len(comment)} characters; at most {COMMENT_MAX} allowed", "comment",
                                "out_of_range")
        comment = comment.strip() or None
    if user_agent is not None:
        user_agent = str(user_agent)[:USER_AGENT_MAX]
    return Feedback(kind, ids, rating, preferred, versions, comment, client_id, user_agent)


def _request_ids(value: Any, kind: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise FeedbackError(f"request_ids must be a non-empty list of request ids, got {value!r}", "request_ids")
    if len(value) > MAX_REQUEST_IDS:
        raise FeedbackError(f"request_ids has {len(value)} ids; at most {MAX_REQUEST_IDS} allowed", "request_ids",
                            "out_of_range")
    for rid in value:
        if not isinstance(rid, str) or not REQUEST_ID.match(rid):
            raise FeedbackError(f"request_ids: {rid!r} is not a request id (1-128 letters, digits, . _ : -)",
                                "request_ids")
    if len(set(value)) != len(value):
        raise FeedbackError(f"request_ids {value} repeat an id", "request_ids")
    if kind == "preference" and len(value) != 2:
        raise FeedbackError(f"a preference compares exactly 2 renders; request_ids has {len(value)}", "request_ids",
                            "out_of_range")
    return tuple(value)


# ------------------------------------------------------------------ stores

def default_store_target() -> str:
    """``$MIXSCALE_FEEDBACK_STORE`` if set, else ``feedback.sqlite3`` in the mixscale home
    (``$MIXSCALE_HOME``, default ``~/.mixscale``; ``mixscale.inference.mixscale_home``)."""
    if os.environ.get(ENV_STORE):
        return os.environ[ENV_STORE]
    from mixscale.inference import mixscale_home

    return str(mixscale_home() / DEFAULT_STORE_NAME)


def open_store(target: str | os.PathLike | None = None, create: bool = True) -> "FeedbackStore":
    """A store for ``target``: a ``postgresql://`` / ``postgres://`` URL, ``sqlite:///PATH`` or a file path.

    ``None`` means ``default_store_target()``. With ``create=False`` a missing SQLite file
    raises ``FeedbackError`` instead of starting an empty store (for readers such as reports).
    """
    target = str(target) if target is not None else default_store_target()
    if target.startswith(("postgresql://", "postgres://")):
        return PostgresStore(target)
    if target.startswith("sqlite:///"):
        target = target[len("sqlite:///") - 1:] if target.startswith("sqlite:////") else target[len("sqlite:///"):]
    elif "://" in target:
        raise FeedbackError(f"feedback store {target!r}: unknown scheme; allowed: a file path, sqlite:///PATH or "
                            "postgresql://...", "store")
    if not create and target != ":memory:" and not Path(target).expanduser().is_file():
        raise FeedbackError(f"feedback store {target}: no such file (the service creates it on first use)", "store")
    return SQLiteStore(target)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))


class FeedbackStore(abc.ABC):
    """Common logic; subclasses supply connections, DDL and the placeholder style.

    SQL is written with ``?`` placeholders and every value is bound, never formatted in.
    Safe to pickle (connections are per thread and per process, opened lazily), so a
    Ray Serve replica can carry one.
    """

    placeholder = "?"

    def __init__(self) -> None:
        self._local = threading.local()
        self._ready = False
        self._ready_lock = threading.Lock()

    def __getstate__(self):
        state = self.__dict__.copy()
        for k in ("_local", "_ready_lock"):
            state.pop(k)
        state["_ready"] = False
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._local = threading.local()
        self._ready_lock = threading.Lock()

    # -- to implement
    @abc.abstractmethod
    def _connect(self):
        """Supplied by each database."""

    @abc.abstractmethod
    def _ddl(self) -> list[str]:
        """Supplied by each database."""

    @abc.abstractmethod
    def _time(self, t: datetime):
        """Supplied by each database."""

    @abc.abstractmethod
    def _insert_returning_id(self, cur, sql: str, params: Sequence) -> int:
        """Supplied by each database."""

    @abc.abstractmethod
    def _begin_write(self, conn):
        """Supplied by each database."""

    # -- connections and transactions
    def _conn(self):
        pid = os.getpid()
        conn = getattr(self._local, "conn", None)
        # A new thread or process, or a connection the server dropped (psycopg marks it closed): connect.
        if conn is None or getattr(self._local, "pid", None) != pid or getattr(conn, "closed", False):
            conn = self._connect()
            self._local.conn, self._local.pid = conn, pid
        if not self._ready:
            with self._ready_lock:
                if not self._ready:
                    self._write(lambda cur: [cur.execute(s) for s in self._ddl()], conn)
                    self._ready = True
        return conn

    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def _write(self, fn, conn=None):
        conn = conn or self._conn()
        cur = self._begin_write(conn)
        try:
            out = fn(cur)
            conn.commit()
            return out
        except BaseException:
            conn.rollback()
            raise
        finally:
            cur.close()

    def _read(self, sql: str, params: Sequence = ()) -> list[tuple]:
        conn = self._conn()
        cur = conn.cursor()
        try:
            cur.execute(self._sql(sql), tuple(params))
            rows = cur.fetchall()
        finally:
            cur.close()
        conn.commit()  # ends the read transaction (psycopg opens one implicitly)
        return rows

    def close(self) -> None:
        """Close this thread's connection (other threads close theirs on exit)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the API
    def record_request(self, request_id: str, version: str, endpoint: str, settings: Mapping | None = None,
                       params: Mapping | None = None, client_id: str | None = None) -> None:
        """Log a served request so feedback can name its version and settings; a repeated id is ignored."""
        if not isinstance(request_id, str) or not REQUEST_ID.match(request_id):
            raise FeedbackError(f"request id {request_id!r} is not valid (1-128 letters, digits, . _ : -)",
                                "request_id")
        sql = self._sql("INSERT INTO requests (request_id, created_at, version, endpoint, client_id, settings, params)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (request_id) DO NOTHING")
        values = (request_id, self._time(_now()), version, endpoint, client_id,
                  _json(dict(settings) if settings is not None else None),
                  _json(dict(params) if params is not None else None))
        self._write(lambda cur: cur.execute(sql, values))

    def add(self, fb: Feedback) -> int:
        """Store one piece of feedback; returns its id. Versions come from the request log where it has them."""
        logged = self.requests(fb.request_ids)
        sent = fb.versions or (None,) * len(fb.request_ids)
        versions = [logged[r]["version"] if r in logged and logged[r]["version"] else v
                    for r, v in zip(fb.request_ids, sent)]
        preferred_version = None
        if fb.preferred_request_id is not None:
            preferred_version = versions[fb.request_ids.index(fb.preferred_request_id)]
        sql = self._sql("INSERT INTO feedback (created_at, kind, request_ids, versions, rating, preferred_request_id,"
                        " preferred_version, client_id, comment, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        values = (self._time(_now()), fb.kind, _json(list(fb.request_ids)), _json(versions), fb.rating,
                  fb.preferred_request_id, preferred_version, fb.client_id, fb.comment, fb.user_agent)
        return self._write(lambda cur: self._insert_returning_id(cur, sql, values))

    def feedback(self) -> list[dict[str, Any]]:
        """Every feedback row, oldest first, as dicts keyed by ``FEEDBACK_COLUMNS`` (JSON decoded)."""
        return self._feedback_rows(self._read(f"SELECT {', '.join(FEEDBACK_COLUMNS)} FROM feedback ORDER BY id"))

    def get(self, row_id: int) -> dict[str, Any] | None:
        """One feedback row by id, or None."""
        rows = self._read(f"SELECT {', '.join(FEEDBACK_COLUMNS)} FROM feedback WHERE id = ?", (int(row_id),))
        return self._feedback_rows(rows)[0] if rows else None

    @staticmethod
    def _feedback_rows(rows: list[tuple]) -> list[dict[str, Any]]:
        out = []
        for row in rows:
            d = dict(zip(FEEDBACK_COLUMNS, row))
            d["created_at"] = _iso(d["created_at"])
            d["request_ids"] = json.loads(d["request_ids"])
            d["versions"] = json.loads(d["versions"])
            out.append(d)
        return out

    def count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM feedback")[0][0])

    def requests(self, request_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The request-log rows of ``request_ids`` that exist, by id (JSON decoded)."""
        ids = list(dict.fromkeys(request_ids))
        rows = []
        for start in range(0, len(ids), ID_BATCH):  # bounded by the engines' limits on bound parameters
            batch = ids[start:start + ID_BATCH]
            marks = ", ".join("?" for _ in batch)
            rows += self._read(f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests WHERE request_id IN ({marks})",
                               batch)
        out = {}
        for row in rows:
            d = dict(zip(REQUEST_COLUMNS, row))
            d["created_at"] = _iso(d["created_at"])
            d["settings"] = json.loads(d["settings"]) if d["settings"] is not None else None
            d["params"] = json.loads(d["params"]) if d["params"] is not None else None
            out[d["request_id"]] = d
        return out


def table_ddl(id_column: str, time_type: str) -> list[str]:
    """The two tables, in either database's words for an identity key and a timestamp."""
    return [
        "CREATE TABLE IF NOT EXISTS feedback ("
        f" id {id_column},"
        f" created_at {time_type} NOT NULL,"
        " kind TEXT NOT NULL CHECK (kind IN ('rating', 'preference')),"
        " request_ids TEXT NOT NULL,"
        " versions TEXT NOT NULL,"
        " rating INTEGER CHECK (rating BETWEEN 1 AND 5),"
        " preferred_request_id TEXT,"
        " preferred_version TEXT,"
        " client_id TEXT,"
        " comment TEXT,"
        " user_agent TEXT)",
        "CREATE TABLE IF NOT EXISTS requests ("
        " request_id TEXT PRIMARY KEY,"
        f" created_at {time_type} NOT NULL,"
        " version TEXT,"
        " endpoint TEXT,"
        " client_id TEXT,"
        " settings TEXT,"
        " params TEXT)",
    ]


def _iso(t) -> str:
    if isinstance(t, datetime):
        return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    return t


class SQLiteStore(FeedbackStore):
    """SQLite through the standard library: WAL, busy timeout, a connection per thread and process."""

    def __init__(self, path: str | os.PathLike, busy_timeout_s: float = BUSY_TIMEOUT_S):
        super().__init__()
        self.path = str(path)
        self.busy_timeout_s = float(busy_timeout_s)
        if self.path != ":memory:":
            parent = Path(self.path).expanduser().resolve().parent
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise FeedbackError(f"feedback store {self.path}: cannot create folder {parent} ({exc.strerror})",
                                    "store") from None

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    def _connect(self):
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                                   check_same_thread=True)
        except sqlite3.Error as exc:
            raise FeedbackError(f"feedback store {self.path}: cannot open ({exc})", "store") from None
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
        deadline = time.monotonic() + self.busy_timeout_s
        while True:  # switching to WAL needs a moment of exclusive access
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        conn.execute("PRAGMA synchronous = FULL")
        return _SQLiteConn(conn)

    def _begin_write(self, conn):
        conn.raw.execute("BEGIN IMMEDIATE")
        return conn.cursor()

    def _time(self, t: datetime) -> str:
        return _iso(t)

    def _insert_returning_id(self, cur, sql, params) -> int:
        cur.execute(sql, params)
        return int(cur.lastrowid)

    def _ddl(self) -> list[str]:
        return table_ddl("INTEGER PRIMARY KEY AUTOINCREMENT", "TEXT")


class _SQLiteConn:
    """sqlite3 in autocommit mode with explicit BEGIN, shaped like a DB-API connection."""

    def __init__(self, raw: sqlite3.Connection):
        self.raw = raw

    def cursor(self):
        return self.raw.cursor()

    def commit(self):
        if self.raw.in_transaction:
            self.raw.execute("COMMIT")

    def rollback(self):
        if self.raw.in_transaction:
            self.raw.execute("ROLLBACK")

    def close(self):
        self.raw.close()


class PostgresStore(FeedbackStore):
    """PostgreSQL through psycopg 3; ``url`` is a libpq URL (``postgresql://user@host/db``)."""

    placeholder = "%s"

    def __init__(self, url: str, connect_timeout_s: float = 10.0):
        super().__init__()
        self.url = url
        self.connect_timeout_s = connect_timeout_s

    def __repr__(self) -> str:
        return f"PostgresStore({_redact(self.url)!r})"

    def _connect(self):
        try:
            import psycopg
        except ImportError:
            raise FeedbackError(f"feedback store {_redact(self.url)}: PostgreSQL needs psycopg "
                                "(pip install 'psycopg[binary]')", "store") from None
        try:
            return psycopg.connect(self.url, connect_timeout=max(1, int(self.connect_timeout_s)))
        except psycopg.Error as exc:
            raise FeedbackError(f"feedback store {_redact(self.url)}: cannot connect ({str(exc).strip()})",
                                "store") from None

    def _begin_write(self, conn):
        return conn.cursor()  # psycopg opens a transaction on the first statement

    def _time(self, t: datetime) -> datetime:
        return t

    def _insert_returning_id(self, cur, sql, params) -> int:
        cur.execute(sql + " RETURNING id", params)
        return int(cur.fetchone()[0])

    def _ddl(self) -> list[str]:
        # Concurrent CREATE TABLE IF NOT EXISTS can race in PostgreSQL; an advisory lock serializes it.
        return ["SELECT pg_advisory_xact_lock(704201)",
                *table_ddl("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "TIMESTAMPTZ")]


def _redact(url: str) -> str:
    """A URL without its password, for messages."""
    return re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", url)


# ------------------------------------------------------------------ dataset export

def dataset_records(store: FeedbackStore) -> list[dict[str, Any]]:
    """The export records (see the module docstring), oldest first."""
    rows = store.feedback()
    logged = store.requests(r for row in rows for r in row["request_ids"])
    out = []
    for row in rows:
        record = {"schema": DATASET_SCHEMA}
        record.update(row)
        record["requests"] = [logged.get(r) for r in row["request_ids"]]
        for req in record["requests"]:
            if req is not None:
                req.pop("client_id", None)  # the feedback row already names its client
        out.append(record)
    return out


def export_dataset(store: FeedbackStore, out: str | os.PathLike, fmt: str | None = None) -> int:
    """Write the feedback dataset to ``out``: ``fmt`` "jsonl" or "parquet" (default: by extension). Returns rows."""
    out = Path(out)
    fmt = fmt or ("parquet" if out.suffix == ".parquet" else "jsonl")
    if fmt not in ("jsonl", "parquet"):
        raise FeedbackError(f"export format {fmt!r}; allowed: jsonl, parquet", "format")
    records = dataset_records(store)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    if fmt == "jsonl":
        with open(tmp, "w", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        flat = [{**r, "requests": json.dumps(r["requests"], sort_keys=True)} for r in records]
        table = pa.Table.from_pylist(flat, schema=_parquet_schema(pa))
        pq.write_table(table, tmp)
    os.replace(tmp, out)
    return len(records)


def _parquet_schema(pa):
    return pa.schema([
        ("schema", pa.string()), ("id", pa.int64()), ("created_at", pa.string()), ("kind", pa.string()),
        ("request_ids", pa.list_(pa.string())), ("versions", pa.list_(pa.string())), ("rating", pa.int64()),
        ("preferred_request_id", pa.string()), ("preferred_version", pa.string()), ("client_id", pa.string()),
        ("comment", pa.string()), ("user_agent", pa.string()), ("requests", pa.string()),
    ])


def read_dataset(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read an exported dataset (JSONL or Parquet) back as records in the JSONL shape."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        records = pq.read_table(path).to_pylist()
        for r in records:
            r["requests"] = json.loads(r["requests"])
        return records
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]

