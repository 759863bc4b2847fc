"""The reads the dashboard and the metrics make over the jobs, as queries the storage layer owns (the API never
holds a connection of its own). Each returns rows as dicts."""

from __future__ import annotations

from typing import Any

from system.jobs.lifecycle import SUCCEEDED, Kind, Status, sql_list
from system.storage.db import DictPool

SUCCEEDED_SQL = sql_list(SUCCEEDED)


def histogram_sql(expr: str, prefix: str, bounds) -> str:
    """Histogram columns over the rows where ``expr`` is not null: ``<prefix>n`` (count), ``<prefix>s`` (sum) and
    ``<prefix><i>`` (count ≤ bounds[i])."""
    cells = [f"count({expr}) AS {prefix}n", f"coalesce(sum({expr}), 0) AS {prefix}s"]
    return ", ".join(cells + [f"count(*) FILTER (WHERE {expr} <= {b}) AS {prefix}{i}" for i, b in enumerate(bounds)])


WAIT = "extract(epoch FROM started_at - enqueued_at)"
TURNAROUND = "extract(epoch FROM finished_at - enqueued_at)"


class JobViews:
    def __init__(self, pool: DictPool):
        self.pool = pool

    def _rows(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return conn.execute(sql, params).fetchall()

    def ping(self, timeout: float = 3) -> None:
        with self.pool.connection(timeout=timeout) as conn:
            conn.execute("SELECT 1")

    # -- the dashboard ---------------------------------------------------------------------------------------------
    def recent(self, limit: int) -> list[dict[str, Any]]:
        """Latest finished jobs: one row per inference model result, one per score job."""
        return self._rows(
            """
            SELECT j.finished_at AS time, j.id AS job_id, j.kind, r.model_name AS model,
                   j.params->>'pattern' AS pattern, j.status, r.prediction, r.inference_ms, j.error_code,
                   j.params->>'title' AS title
            FROM jobs j LEFT JOIN inference_results r ON r.job_id = j.id
            WHERE j.finished_at IS NOT NULL
            ORDER BY j.finished_at DESC, r.model_name LIMIT %s""",
            (limit,),
        )

    def live_stats(self) -> dict[str, Any]:
        """Jobs by state, and how many finished in the last minute."""
        [row] = self._rows(
            f"""
            SELECT count(*) AS total,
                   count(*) FILTER (WHERE status IN {SUCCEEDED_SQL}) AS completed,
                   count(*) FILTER (WHERE status = %(failed)s) AS failed,
                   count(*) FILTER (WHERE status = %(queued)s) AS queued,
                   count(*) FILTER (WHERE status = %(running)s) AS running,
                   count(*) FILTER (WHERE finished_at > now() - interval '60 seconds') AS finished_last_minute
            FROM jobs""",
            {"failed": Status.FAILED, "queued": Status.QUEUED, "running": Status.RUNNING},
        )
        return row

    def model_comparison(self) -> list[dict[str, Any]]:
        """Per model (pattern NULL) and per model and pattern: count, latency, errors."""
        return self._rows(
            """
            SELECT model_name AS model, pattern, count(*) AS count,
                   avg(inference_ms) AS avg_inference_ms,
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY inference_ms) AS p95_inference_ms,
                   avg(mae) AS mae, sqrt(avg(rmse * rmse)) AS rmse
            FROM inference_results GROUP BY GROUPING SETS ((model_name), (model_name, pattern))
            ORDER BY model_name, pattern NULLS FIRST""",
        )

    def patterns(self) -> list[dict[str, Any]]:
        return self._rows(
            """
            SELECT params->>'pattern' AS pattern, count(*) AS jobs,
                   count(*) FILTER (WHERE status = %(completed)s) AS completed,
                   count(*) FILTER (WHERE status = %(failed)s) AS failed
            FROM jobs WHERE kind = %(kind)s GROUP BY 1 ORDER BY 1""",
            {"completed": Status.COMPLETED, "failed": Status.FAILED, "kind": Kind.INFERENCE},
        )

    def throughput(self, minutes: int, bucket_seconds: int) -> list[dict[str, Any]]:
        """Jobs finished per time bucket (completed / failed), oldest first."""
        return self._rows(
            f"""
            SELECT to_timestamp(floor(extract(epoch FROM finished_at) / %(b)s) * %(b)s) AS t,
                   count(*) FILTER (WHERE status IN {SUCCEEDED_SQL}) AS completed,
                   count(*) FILTER (WHERE status = %(failed)s) AS failed
            FROM jobs WHERE finished_at > now() - make_interval(mins => %(m)s)
            GROUP BY 1 ORDER BY 1""",
            {"b": bucket_seconds, "m": minutes, "failed": Status.FAILED},
        )

    def scores(self, limit: int) -> list[dict[str, Any]]:
        """Latest score jobs: title, key, stage, and their audio's S3 key (``audio_key``) when there is one."""
        return self._rows(
            """
            SELECT j.id AS job_id, j.status, j.error_code, j.enqueued_at, j.finished_at,
                   coalesce(j.params->>'title', j.result->'analysis'->>'title', j.params->>'filename_stem') AS title,
                   j.result->'analysis'->'key'->>'name' AS key, j.result->'audio'->>'key' AS audio_key,
                   (j.result->'audio'->>'seconds')::float AS audio_seconds,
                   (SELECT stage FROM job_stages s WHERE s.job_id = j.id ORDER BY s.started_at DESC LIMIT 1) AS stage
            FROM jobs j WHERE j.kind = %(kind)s ORDER BY j.enqueued_at DESC LIMIT %(limit)s""",
            {"kind": Kind.SCORE, "limit": limit},
        )

    # -- the metrics -----------------------------------------------------------------------------------------------
    def job_figures(self, queue_bounds, stage_bounds) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """One pass over the jobs for every figure of theirs, per queue, kind and state (count, attempts after the
        first as ``again``, queue wait as ``w*`` and turnaround as ``t*`` histogram columns), and one over the stages
        (``d*``, seconds), per stage."""
        jobs_sql = (
            "SELECT queue, kind, status, count(*) AS jobs, sum(greatest(attempts - 1, 0)) AS again, "
            f"{histogram_sql(WAIT, 'w', queue_bounds)}, {histogram_sql(TURNAROUND, 't', queue_bounds)} "
            "FROM jobs GROUP BY 1, 2, 3"
        )
        stages_sql = (
            f"SELECT stage, {histogram_sql('duration_ms / 1000.0', 'd', stage_bounds)} FROM job_stages "
            "WHERE duration_ms IS NOT NULL GROUP BY stage"
        )
        with self.pool.connection() as conn:
            return conn.execute(jobs_sql).fetchall(), conn.execute(stages_sql).fetchall()
