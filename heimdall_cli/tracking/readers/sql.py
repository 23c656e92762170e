"""Read-only run queries on MLflow's SQL store (SQLite, PostgreSQL), without importing MLflow.

MLflow's schema is not an interface to write to, and heimdall never does: every write goes
through ``MlflowClient``. Reads are guarded by the schema revision: a database at a revision
this module was not checked against raises :class:`Unsupported` and the caller uses MLflow.
The queries mirror ``SqlAlchemyStore.search_runs``: filters on ``latest_metrics``/``params``/
``tags``, ``run_name`` as the ``mlflow.runName`` tag, missing and NaN metrics last in either
direction, then ``start_time DESC`` and ``run_uuid`` as tie-breakers; active runs only.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from heimdall_cli.errors import BackendUnavailable, NotFound
from heimdall_cli.redact import mask_uri
from heimdall_cli.tracking.grammar import Clause, Unsupported, parse_filter, parse_order
from heimdall_cli.tracking.probe import sqlite_path
from heimdall_cli.tracking.readers.artifacts import list_artifact_tree
from heimdall_cli.tracking.records import RunRecord, VersionRecord
from heimdall_cli.tracking.runs import run_not_found

if TYPE_CHECKING:
    from heimdall_cli.settings import Settings

#: Alembic revisions of MLflow's tracking schema these queries were checked against (MLflow 3.17).
KNOWN_REVISIONS = frozenset({"dc11669786a5"})
_COLUMNS = {"run_id": "run_uuid", "run_name": "name", "status": "status", "user_id": "user_id",
            "artifact_uri": "artifact_uri", "start_time": "start_time", "end_time": "end_time"}
_TABLES = {"metric": "latest_metrics", "param": "params", "tag": "tags"}
_RUN_FIELDS = "run_uuid, name, experiment_id, status, start_time, end_time, artifact_uri"
_VERSION_FIELDS = "name, version, status, source, run_id, current_stage, creation_time, description"
_LIVE_VERSION = "workspace = 'default' AND current_stage != 'Deleted_Internal'"  # MLflow's soft delete


class SqlReader:
    """The :class:`~heimdall_cli.tracking.search.RunSource` queries, answered with SQL."""

    def __init__(self, settings: Settings, timeout: float) -> None:
        self.settings = settings
        tracking = settings.tracking
        self._pg = tracking.backend == "postgresql"
        self._conn: Any = None
        if self._pg:
            import psycopg

            conninfo = "postgresql://" + tracking.connection_uri().split("://", 1)[1].split("?", 1)[0]
            try:
                self._conn = psycopg.connect(conninfo, connect_timeout=max(1, int(timeout)), autocommit=True)
            except psycopg.OperationalError as e:
                parts = urlsplit(tracking.uri)
                reason = " ".join(str(e).split())[:300] or type(e).__name__
                raise BackendUnavailable(
                    f"PostgreSQL at {parts.hostname or 'localhost'}:{parts.port or 5432} is unreachable or "
                    f"refused: {reason}",
                    "Check that the server runs and tracking.uri (host, port, database, user) is right.") from None
        else:
            path = sqlite_path(tracking.uri)
            if path.exists():
                self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)
        if self._conn is not None:
            try:
                revision = self._rows("SELECT version_num FROM alembic_version")
            except Exception:
                revision = []
            if not revision:  # a database MLflow has not created (yet): MLflow decides what it is
                raise Unsupported(f"no MLflow schema at {mask_uri(tracking.uri)}")
            if revision[0][0] not in KNOWN_REVISIONS:
                raise Unsupported(f"schema revision {revision[0][0]}")

    # ------------------------------------------------------------------ SQL
    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self._conn is None:  # no SQLite file yet: an empty store
            return []
        if self._pg:
            sql = sql.replace("?", "%s")
        return list(self._conn.execute(sql, tuple(args)).fetchall())

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    # ------------------------------------------------------------------ experiments
    def find_experiment(self, name: str | None = None) -> str:
        name = name or self.settings.tracking.experiment
        rows = self._rows("SELECT experiment_id, lifecycle_stage FROM experiments WHERE name = ? "
                          "AND workspace = 'default'", [name])
        if not rows or rows[0][1] == "deleted":
            raise NotFound(f"Experiment '{name}' not found.", "List experiments in the MLflow UI: heimdall ui")
        return str(rows[0][0])

    def experiment_name(self, experiment_id: str) -> str:
        rows = self._rows("SELECT name FROM experiments WHERE experiment_id = ?", [int(experiment_id)])
        if not rows:
            raise NotFound(f"Experiment {experiment_id} not found.")
        return str(rows[0][0])

    # ------------------------------------------------------------------ runs
    def search(self, experiment_ids: list[str], filter_string: str | None = None,
               order_by: list[str] | None = None, max_results: int = 100) -> list[RunRecord]:
        clauses = parse_filter(filter_string)
        joins, order_terms, args_join, args_where = [], [], [], []
        ordered_start = False
        for i, text in enumerate(order_by or []):
            order = parse_order(text)
            direction = "" if order.ascending else " DESC"
            if order.kind == "attribute":
                column = f"r.{_COLUMNS[order.key]}"
                ordered_start |= order.key == "start_time"
                order_terms += [f"CASE WHEN {column} IS NULL THEN 1 ELSE 0 END", column + direction]
                continue
            alias = f"o{i}"
            joins.append(f'LEFT JOIN {_TABLES[order.kind]} {alias} ON {alias}.run_uuid = r.run_uuid '
                         f'AND {alias}."key" = ?')
            args_join.append(order.key)
            nan = f"WHEN {alias}.is_nan THEN 1 WHEN {alias}.value IS NULL THEN 2" if order.kind == "metric" \
                else f"WHEN {alias}.value IS NULL THEN 1"
            order_terms += [f"CASE {nan} ELSE 0 END", f"{alias}.value{direction}"]
        if not ordered_start:
            order_terms.append("r.start_time DESC")
        order_terms.append("r.run_uuid")
        where = [f"r.experiment_id IN ({', '.join('?' * len(experiment_ids))})", "r.lifecycle_stage = 'active'"]
        args_where += [int(e) for e in experiment_ids]
        for clause in clauses:
            sql, values = self._condition(clause)
            where.append(sql)
            args_where += values
        rows = self._rows(f"SELECT r.run_uuid FROM runs r {' '.join(joins)} WHERE {' AND '.join(where)} "
                          f"ORDER BY {', '.join(order_terms)} LIMIT ?", [*args_join, *args_where, max_results])
        return self._records([r[0] for r in rows])

    def _condition(self, clause: Clause) -> tuple[str, list[Any]]:
        op, value = clause.op, clause.value
        if clause.kind == "attribute" and clause.key != "run_name":
            column = f"r.{_COLUMNS[clause.key]}"
            if op in ("IN", "NOT IN"):
                values = list(value) if isinstance(value, tuple) else [value]
                return f"{column} {op} ({', '.join('?' * len(values)) or 'NULL'})", values
            return self._compare(column, op), [value]
        table, key = (("tags", "mlflow.runName") if clause.kind == "attribute" else (_TABLES[clause.kind], clause.key))
        test = self._compare("x.value", op)
        if clause.kind == "metric":  # NaN is stored as 0 with is_nan: it satisfies "!=" only (as in MLflow)
            test = f"({test} OR x.is_nan)" if op == "!=" else f"({test} AND NOT x.is_nan)"
        return (f'EXISTS (SELECT 1 FROM {table} x WHERE x.run_uuid = r.run_uuid AND x."key" = ? '
                f"AND {test})"), [key, value]

    def _compare(self, column: str, op: str) -> str:
        if op == "ILIKE":
            return f"lower({column}) LIKE lower(?)"
        return f"{column} {op} ?"

    def _records(self, run_ids: list[str]) -> list[RunRecord]:
        if not run_ids:
            return []
        marks = ", ".join("?" * len(run_ids))
        runs = {r[0]: RunRecord(run_id=r[0], name=r[1] or "", experiment_id=str(r[2]), status=r[3],
                                start_time=r[4], end_time=r[5], artifact_uri=r[6] or "")
                for r in self._rows(f"SELECT {_RUN_FIELDS} FROM runs WHERE run_uuid IN ({marks})", run_ids)}
        for run_uuid, key, value in self._rows(f'SELECT run_uuid, "key", value FROM params '
                                               f"WHERE run_uuid IN ({marks})", run_ids):
            runs[run_uuid].params[key] = value
        for run_uuid, key, value, is_nan in self._rows(f'SELECT run_uuid, "key", value, is_nan FROM latest_metrics '
                                                       f"WHERE run_uuid IN ({marks})", run_ids):
            runs[run_uuid].metrics[key] = math.nan if is_nan else float(value)
        for run_uuid, key, value in self._rows(f'SELECT run_uuid, "key", value FROM tags '
                                               f"WHERE run_uuid IN ({marks})", run_ids):
            if not key.startswith("mlflow.") or key == "mlflow.runName":
                runs[run_uuid].tags[key] = value
        return [runs[r] for r in run_ids if r in runs]

    def match_run_ids(self, prefix: str, limit: int = 2) -> list[str]:
        rows = self._rows("SELECT run_uuid FROM runs WHERE run_uuid LIKE ? AND lifecycle_stage = 'active' "
                          "ORDER BY run_uuid LIMIT ?", [prefix + "%", limit])
        return [r[0] for r in rows]

    def get_run(self, run_id: str | None = None) -> RunRecord:
        records = self._records([run_id]) if run_id else []
        if not records:
            raise run_not_found(str(run_id))
        return records[0]

    def metric_history(self, key: str, run_id: str | None = None) -> list[tuple[int, float, int]]:
        rows = self._rows('SELECT step, value, timestamp, is_nan FROM metrics WHERE run_uuid = ? AND "key" = ?',
                          [run_id, key])
        return sorted(((int(s), math.nan if nan else float(v), int(t)) for s, v, t, nan in rows),
                      key=lambda p: (p[0], p[2]))

    def list_artifacts(self, path: str | None = None, run_id: str | None = None) -> list[tuple[str, int | None]]:
        return list_artifact_tree(self.get_run(run_id).artifact_uri, self.settings, path)

    # ------------------------------------------------------------------ registry
    def logged_models(self, run_id: str | None = None) -> list[Any]:
        """The live logged models of a run (as ``Tracker.logged_models``)."""
        from types import SimpleNamespace

        from heimdall_cli.tracking.logged_models import STATUSES, LoggedModelRecord

        if not run_id:
            raise Unsupported("no run id")
        rows = self._rows("SELECT model_id, name, status, model_type, creation_timestamp_ms FROM logged_models "
                          "WHERE source_run_id = ? AND lifecycle_stage = 'active'", [run_id])
        out = []
        for model_id, name, status, model_type, created in rows:
            tags = dict(self._rows("SELECT tag_key, tag_value FROM logged_model_tags WHERE model_id = ?", [model_id]))
            metrics = [SimpleNamespace(key=k, step=int(s), timestamp=int(t), value=float(v)) for k, s, t, v in
                       self._rows("SELECT metric_name, metric_step, metric_timestamp_ms, metric_value "
                                  "FROM logged_model_metrics WHERE model_id = ?", [model_id])]
            out.append(LoggedModelRecord.from_mlflow(SimpleNamespace(
                model_id=model_id, name=name, tags=tags, metrics=metrics, status=STATUSES.get(int(status), "?"),
                model_type=model_type, creation_timestamp=created)))
        return sorted(out, key=lambda r: (r.step if r.step is not None else -1, r.created_ms))

    def registered_model_aliases(self, name: str) -> dict[str, int] | None:
        if not self._rows("SELECT 1 FROM registered_models WHERE name = ? AND workspace = 'default'", [name]):
            return None
        return {alias: int(v) for alias, v in self._rows(
            "SELECT alias, version FROM registered_model_aliases WHERE name = ? AND workspace = 'default'", [name])}

    def model_version(self, name: str, version: int) -> VersionRecord | None:
        found = self._versions(f"name = ? AND version = ? AND {_LIVE_VERSION}", [name, int(version)])
        return found[0] if found else None

    def version_by_alias(self, name: str, alias: str) -> VersionRecord | None:
        rows = self._rows("SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ? "
                          "AND workspace = 'default'", [name, alias])
        return self.model_version(name, int(rows[0][0])) if rows else None

    def search_versions(self, name: str, limit: int = 100) -> list[VersionRecord]:
        return self._versions(f"name = ? AND {_LIVE_VERSION} ORDER BY version DESC LIMIT ?", [name, limit])

    def _versions(self, where: str, args: list[Any]) -> list[VersionRecord]:
        records = [VersionRecord(name=r[0], version=int(r[1]), status=str(r[2]), source=r[3] or "", run_id=r[4] or None,
                                 stage=r[5], created_ms=r[6], description=r[7] or "")
                   for r in self._rows(f"SELECT {_VERSION_FIELDS} FROM model_versions WHERE {where}", args)]
        if records:
            name = records[0].name
            by_version = {r.version: r for r in records}
            for alias, version in self._rows("SELECT alias, version FROM registered_model_aliases "
                                             "WHERE name = ? AND workspace = 'default'", [name]):
                if int(version) in by_version:
                    by_version[int(version)].aliases.append(alias)
            marks = ", ".join("?" * len(by_version))
            for key, value, version in self._rows(
                    f'SELECT "key", value, version FROM model_version_tags WHERE name = ? AND workspace = \'default\' '
                    f"AND version IN ({marks})", [name, *by_version]):
                by_version[int(version)].tags[key] = value
            for r in records:
                r.aliases.sort()
        return records
