"""The results store: SQLite by default, PostgreSQL by URL, one schema on both (SQLAlchemy Core).

Tables: `runs` (with the revision, label and machine key history series are keyed by), `cases` (headline
figures as columns, the paired ratio to the reference among them, the whole result as JSON), `samples` (raw
latency samples), `change_points` (what `bench history --update` found, rewritten per series), and the flat
view `case_summary` (one row per case) for Superset or Tableau (docs/dashboards.md). Migrations are
numbered and recorded in `schema_migrations`; they run under a lock, so two `bench run` processes
opening a new store at once do not race. Every result is its own transaction: concurrent writers
append, and a reader never sees half a case.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.results.readings.history import ChangePoint, ChangePointRow, HistoryPoint, SeriesKey
from harness.results.schema import (
    Environment,
    PairedComparison,
    Result,
    RunRecord,
    headline_figures,
    json_safe,
    machine_key,
    parse_results,
)
from profiles.errors import ConfigError, SchemaError, StoreError

DEFAULT_URL = "sqlite:///bench-results/results.sqlite"
SQLITE_BUSY_TIMEOUT_MS = 60_000

_MIGRATIONS_TABLE = "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT)"
_SUMMARY_VIEW = """
CREATE VIEW case_summary AS
SELECT c.id AS case_id, r.run_id, r.created_at, r.hostname, r.profile_name,
       c.model, c.variant, c.format, c.device, c.backend, c.status, c.reason,
       c.median_ms, c.ci95_lo_ms, c.ci95_hi_ms, c.p90_ms, c.p99_ms, c.cv, c.n_samples,
       c.load_cold_ms, c.load_warm_ms, c.peak_rss_bytes, c.energy_source, c.cpu_ms_per_inference,
       c.mj_per_inference, c.size_bytes, c.sha256, c.parity_passed
FROM cases c JOIN runs r ON r.run_id = c.run_id
"""

_SUMMARY_VIEW_2 = """
CREATE VIEW case_summary AS
SELECT c.id AS case_id, r.run_id, r.created_at, r.hostname, r.profile_name,
       r.revision, r.revision_describe, r.label, r.machine_key,
       c.model, c.variant, c.format, c.device, c.backend, c.status, c.reason,
       c.median_ms, c.ci95_lo_ms, c.ci95_hi_ms, c.p90_ms, c.p99_ms, c.cv, c.n_samples,
       c.ratio, c.ratio_lo, c.ratio_hi,
       c.load_cold_ms, c.load_warm_ms, c.peak_rss_bytes, c.energy_source, c.cpu_ms_per_inference,
       c.mj_per_inference, c.size_bytes, c.sha256, c.parity_passed
FROM cases c JOIN runs r ON r.run_id = c.run_id
"""

# Version history: each entry is applied once, in order, and recorded. Never edit a shipped entry.
MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE runs (
                run_id VARCHAR(64) PRIMARY KEY, created_at VARCHAR(40) NOT NULL, hostname VARCHAR(255),
                profile_name VARCHAR(255), schema_version INTEGER NOT NULL,
                environment_json TEXT NOT NULL, profile_json TEXT NOT NULL)""",
            """CREATE TABLE cases (
                id {serial} PRIMARY KEY, run_id VARCHAR(64) NOT NULL REFERENCES runs(run_id),
                model VARCHAR(512) NOT NULL, variant VARCHAR(128) NOT NULL, format VARCHAR(32) NOT NULL,
                device VARCHAR(16) NOT NULL, backend VARCHAR(32) NOT NULL, status VARCHAR(16) NOT NULL,
                reason TEXT, median_ms DOUBLE PRECISION, ci95_lo_ms DOUBLE PRECISION,
                ci95_hi_ms DOUBLE PRECISION, p90_ms DOUBLE PRECISION, p99_ms DOUBLE PRECISION,
                cv DOUBLE PRECISION, n_samples INTEGER, load_cold_ms DOUBLE PRECISION,
                load_warm_ms DOUBLE PRECISION, peak_rss_bytes BIGINT, energy_source VARCHAR(64),
                cpu_ms_per_inference DOUBLE PRECISION, mj_per_inference DOUBLE PRECISION,
                size_bytes BIGINT, sha256 VARCHAR(64), parity_passed BOOLEAN, result_json TEXT NOT NULL)""",
            "CREATE INDEX cases_run ON cases (run_id)",
            "CREATE INDEX cases_key ON cases (model, variant, device, backend)",
            """CREATE TABLE samples (
                case_id INTEGER NOT NULL REFERENCES cases(id), process INTEGER NOT NULL,
                idx INTEGER NOT NULL, ms DOUBLE PRECISION NOT NULL)""",
            "CREATE INDEX samples_case ON samples (case_id)",
            _SUMMARY_VIEW,
        ],
    ),
    (
        2,
        [
            "DROP VIEW case_summary",
            "ALTER TABLE runs ADD COLUMN revision VARCHAR(64)",
            "ALTER TABLE runs ADD COLUMN revision_describe VARCHAR(255)",
            "ALTER TABLE runs ADD COLUMN label VARCHAR(255)",
            "ALTER TABLE runs ADD COLUMN machine_key VARCHAR(512)",
            "CREATE INDEX runs_machine ON runs (machine_key)",
            "ALTER TABLE cases ADD COLUMN ratio DOUBLE PRECISION",
            "ALTER TABLE cases ADD COLUMN ratio_lo DOUBLE PRECISION",
            "ALTER TABLE cases ADD COLUMN ratio_hi DOUBLE PRECISION",
            """CREATE TABLE change_points (
                id {serial} PRIMARY KEY, machine_key VARCHAR(512) NOT NULL, model VARCHAR(512) NOT NULL,
                variant VARCHAR(128) NOT NULL, device VARCHAR(16) NOT NULL, figure VARCHAR(16) NOT NULL,
                run_id VARCHAR(64) NOT NULL REFERENCES runs(run_id), revision VARCHAR(255),
                created_at VARCHAR(40) NOT NULL, before_value DOUBLE PRECISION NOT NULL,
                after_value DOUBLE PRECISION NOT NULL, ratio DOUBLE PRECISION NOT NULL,
                direction VARCHAR(16) NOT NULL, p_value DOUBLE PRECISION NOT NULL, found_at VARCHAR(40) NOT NULL)""",
            "CREATE INDEX change_points_series ON change_points (machine_key, model, variant, device, figure)",
            _SUMMARY_VIEW_2,
        ],
    ),
]
LATEST_VERSION = MIGRATIONS[-1][0]
RUN_COLUMNS = (
    "run_id", "created_at", "hostname", "profile_name", "schema_version", "environment_json", "profile_json",
    "revision", "revision_describe", "label", "machine_key",
)  # fmt: skip
CHANGE_POINT_COLUMNS = (
    "machine_key", "model", "variant", "device", "figure", "run_id", "revision", "created_at", "before_value",
    "after_value", "ratio", "direction", "p_value", "found_at",
)  # fmt: skip


def ratio_columns(versus: PairedComparison | None) -> dict[str, float | None]:
    """The `cases` columns of a case's paired ratio to its model's reference: None where it was not paired
    or its paired processes failed."""
    if versus is None or versus.failure is not None:
        return {"ratio": None, "ratio_lo": None, "ratio_hi": None}
    low, high = versus.ci95 if len(versus.ci95) == 2 else (None, None)
    return json_safe({"ratio": versus.ratio, "ratio_lo": low, "ratio_hi": high})


def _backfill_history_columns(conn: Any, sa: Any) -> None:
    """Migration 2's data: the machine key of every run and the paired ratio of every case already stored,
    worked out from their JSON documents as `add_run` and `add_result` write them now."""
    from pydantic import TypeAdapter

    environments = TypeAdapter(Environment)
    for run_id, environment in conn.execute(sa.text("SELECT run_id, environment_json FROM runs")).all():
        key = machine_key(environments.validate_json(environment))
        conn.execute(sa.text("UPDATE runs SET machine_key = :k WHERE run_id = :r"), {"k": key, "r": run_id})
    comparisons = TypeAdapter(PairedComparison)
    for case_id, document in conn.execute(sa.text("SELECT id, result_json FROM cases WHERE status = 'ok'")).all():
        versus = json.loads(document).get("versus")
        if versus is not None:
            conn.execute(
                sa.text("UPDATE cases SET ratio = :ratio, ratio_lo = :ratio_lo, ratio_hi = :ratio_hi WHERE id = :id"),
                {**ratio_columns(comparisons.validate_python(versus)), "id": case_id},
            )


BACKFILLS = {2: _backfill_history_columns}
CASE_COLUMNS = (
    "model", "variant", "format", "device", "backend", "status", "reason", "median_ms", "ci95_lo_ms",
    "ci95_hi_ms", "p90_ms", "p99_ms", "cv", "n_samples", "load_cold_ms", "load_warm_ms", "peak_rss_bytes",
    "energy_source", "cpu_ms_per_inference", "mj_per_inference", "size_bytes", "sha256", "parity_passed",
)  # fmt: skip


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite store URL names (None for another database, an in-memory store or a URL that
    does not parse: opening the store reports that)."""
    import sqlalchemy as sa

    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


class ResultsStore:
    def __init__(self, url: str = DEFAULT_URL) -> None:
        import sqlalchemy as sa

        self.sa = sa
        self.url = url
        try:
            parsed = sa.engine.make_url(url)
        except sa.exc.ArgumentError as exc:
            raise ConfigError(f"--db {url!r}: not a database URL (sqlite:///PATH or postgresql://...)") from exc
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ConfigError(f"--db {url!r}: unsupported database '{self.dialect}'; use sqlite or postgresql")
        if self.dialect == "sqlite" and parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        if self.dialect == "postgresql" and parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000} if self.dialect == "sqlite" else {}
        try:
            self.engine = sa.create_engine(parsed, future=True, connect_args=connect_args)
        except ImportError as exc:
            raise ConfigError(f"--db {url!r}: the driver is missing (pip install 'ondevice-bench[postgres]')") from exc
        if self.dialect == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            sa.event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        self.migrate()

    def migrate(self) -> None:
        """Apply pending migrations under a lock (SQLite: a write transaction; PostgreSQL: an advisory lock).

        Opening waits for other writers like every write does: SQLite's busy timeout covers the
        transaction, and a lock that a connection's own set-up meets (switching the journal to WAL takes
        an exclusive lock that the busy handler does not always wait for) is retried until the timeout."""
        sa = self.sa
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
        delay = 0.01
        while True:
            try:
                self._migrate_once()
                return
            except sa.exc.OperationalError as exc:
                first = str(exc.orig).strip().splitlines()[0]
                if ("locked" not in first and "busy" not in first) or time.monotonic() > deadline:
                    raise ConfigError(f"--db {self.url}: cannot open the store: {first}") from exc
            except sa.exc.DatabaseError as exc:
                first = str(exc.orig).strip().splitlines()[0]
                raise ConfigError(f"--db {self.url}: not a results store: {first}") from exc
            time.sleep(delay)  # back off and retry: another process holds the lock
            delay = min(delay * 2, 0.5)

    def _migrate_once(self) -> None:
        sa = self.sa
        serial = "INTEGER" if self.dialect == "sqlite" else "SERIAL"
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7470520)"))
            conn.execute(sa.text(_MIGRATIONS_TABLE))
            done = {row[0] for row in conn.execute(sa.text("SELECT version FROM schema_migrations"))}
            newer = sorted(version for version in done if version > LATEST_VERSION)
            if newer:
                raise ConfigError(
                    f"--db {self.url}: the store has migration {newer[-1]}, newer than this bench knows"
                    f" (up to {LATEST_VERSION}); upgrade ondevice-bench or give another --db"
                )
            for version, statements in MIGRATIONS:
                if version in done:
                    continue
                for statement in statements:
                    conn.execute(sa.text(statement.replace("{serial}", serial)))
                if version in BACKFILLS:
                    BACKFILLS[version](conn, sa)
                conn.execute(
                    sa.text("INSERT INTO schema_migrations (version, applied_at) VALUES (:v, CURRENT_TIMESTAMP)"),
                    {"v": version},
                )

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(self.sa.text("SELECT MAX(version) FROM schema_migrations")).scalar() or 0)

    @contextmanager
    def _writing(self) -> Iterator[Any]:
        """One write transaction; a write the database refuses is a `StoreError` naming the store and
        the database's reason (a bug in the bench is not caught here: it stays itself)."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except (self.sa.exc.SQLAlchemyError, OSError) as exc:
            raise StoreError(f"results store {self.url}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc

    def add_run(self, run: RunRecord) -> None:
        row = {
            "run_id": run.run_id,
            "created_at": run.created_at,
            "hostname": run.environment.hostname,
            "profile_name": run.profile.name,
            "schema_version": run.schema_version,
            "environment_json": json.dumps(json_safe(run.environment), allow_nan=False),
            "profile_json": json.dumps(json_safe(run.profile), allow_nan=False),
            "revision": run.revision,
            "revision_describe": run.revision_describe,
            "label": run.label,
            "machine_key": run.machine_key,
        }
        values = ", ".join(f":{key}" for key in RUN_COLUMNS)
        with self._writing() as conn:
            conn.execute(self.sa.text(f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({values})"), row)

    def add_result(self, run_id: str, result: Result) -> None:
        sa = self.sa
        figures = json_safe(headline_figures(result))
        row = {
            "run_id": run_id,
            **{key: figures[key] for key in CASE_COLUMNS},
            **ratio_columns(result.versus),
            "result_json": json.dumps(json_safe(result), allow_nan=False),
        }
        columns = ", ".join(row)
        values = ", ".join(f":{key}" for key in row)
        with self._writing() as conn:
            insert = sa.text(f"INSERT INTO cases ({columns}) VALUES ({values}) RETURNING id")
            case_id = conn.execute(insert, row).scalar_one()
            samples = [
                {"case_id": case_id, "process": p, "idx": i, "ms": value}
                for p, process in enumerate(result.samples_ms)
                for i, value in enumerate(process)
            ]
            if samples:
                conn.execute(
                    sa.text("INSERT INTO samples (case_id, process, idx, ms) VALUES (:case_id, :process, :idx, :ms)"),
                    samples,
                )

    def update_result(self, run_id: str, result: Result) -> None:
        """Replace the stored document of a case already added (its paired comparisons came later)."""
        model, variant, device, backend = result.case_key
        with self._writing() as conn:
            conn.execute(
                self.sa.text(
                    "UPDATE cases SET result_json = :json, ratio = :ratio, ratio_lo = :ratio_lo, ratio_hi = :ratio_hi"
                    " WHERE run_id = :run_id AND model = :model AND variant = :variant AND device = :device"
                    " AND backend = :backend"
                ),
                {
                    "json": json.dumps(json_safe(result), allow_nan=False),
                    **ratio_columns(result.versus),
                    "run_id": run_id,
                    "model": model,
                    "variant": variant,
                    "device": device,
                    "backend": backend,
                },
            )

    def run_ids(self) -> list[str]:
        with self.engine.connect() as conn:
            return [row[0] for row in conn.execute(self.sa.text("SELECT run_id FROM runs ORDER BY created_at"))]

    def load_run(self, run_id: str) -> RunRecord:
        """A run as a results document (schema_version 1), from the store."""
        sa = self.sa
        with self.engine.connect() as conn:
            run = conn.execute(sa.text("SELECT * FROM runs WHERE run_id = :r"), {"r": run_id}).mappings().first()
            if run is None:
                raise SchemaError(f"run '{run_id}' is not in the store {self.url}")
            cases = conn.execute(
                sa.text("SELECT result_json FROM cases WHERE run_id = :r ORDER BY id"), {"r": run_id}
            ).scalars()
            document = {
                "schema_version": run["schema_version"],
                "run_id": run["run_id"],
                "created_at": run["created_at"],
                "environment": json.loads(run["environment_json"]),
                "profile": json.loads(run["profile_json"]),
                "results": [json.loads(text) for text in cases],
                "revision": run["revision"],
                "revision_describe": run["revision_describe"],
                "label": run["label"],
                "machine_key": run["machine_key"] or "",
            }
        return parse_results(document, f"{self.url} run {run_id}")

    def history(
        self, models: list[str] | None = None, variants: list[str] | None = None, devices: list[str] | None = None
    ) -> list[HistoryPoint]:
        """Every measured case of every run, oldest run first: what `bench history` makes its series of."""
        sa = self.sa
        query = (
            "SELECT r.run_id, r.created_at, r.revision, r.revision_describe, r.label, r.machine_key, r.hostname,"
            " c.model, c.variant, c.device, c.backend, c.median_ms, c.ci95_lo_ms, c.ci95_hi_ms, c.cv,"
            " c.ratio, c.ratio_lo, c.ratio_hi"
            " FROM cases c JOIN runs r ON r.run_id = c.run_id WHERE c.status = 'ok' AND c.median_ms IS NOT NULL"
        )
        params: dict[str, list[str]] = {}
        expanding = []
        for column, values in (("model", models), ("variant", variants), ("device", devices)):
            if values:
                query += f" AND c.{column} IN :{column}s"
                params[f"{column}s"] = list(values)
                expanding.append(sa.bindparam(f"{column}s", expanding=True))
        statement = sa.text(query + " ORDER BY r.created_at, r.run_id, c.id").bindparams(*expanding)
        with self.engine.connect() as conn:
            return [HistoryPoint(**row) for row in conn.execute(statement, params).mappings()]

    def replace_change_points(self, series: list[SeriesKey], found: list[ChangePoint]) -> None:
        """Rewrite the stored change points of `series` with `found`, in one transaction: a dashboard reads
        either the old set or the new, never a mix."""
        sa = self.sa
        with self.engine.begin() as conn:
            for key in series:
                conn.execute(
                    sa.text(
                        "DELETE FROM change_points WHERE machine_key = :machine_key AND model = :model"
                        " AND variant = :variant AND device = :device AND figure = :figure"
                    ),
                    asdict(key),
                )
            if found:
                values = ", ".join(f":{column}" for column in CHANGE_POINT_COLUMNS)
                conn.execute(
                    sa.text(f"INSERT INTO change_points ({', '.join(CHANGE_POINT_COLUMNS)}) VALUES ({values})"),
                    [change.row() for change in found],
                )

    def change_points(self) -> list[ChangePointRow]:
        """The stored change points, oldest first (as `bench history --update` last wrote them)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                self.sa.text(
                    f"SELECT {', '.join(CHANGE_POINT_COLUMNS)} FROM change_points"
                    " ORDER BY machine_key, model, variant, device, figure, created_at"
                )
            ).mappings()
            return [ChangePointRow(**row) for row in rows]


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    connection.isolation_level = None  # let SQLAlchemy's BEGIN IMMEDIATE take the write lock up front
    cursor = connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
