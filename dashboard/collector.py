"""What the dashboard shows, gathered in one pass (`Collector.collect`).

Every source runs concurrently with its own timeout, and a failing source is reported in the
snapshot ("down" plus the error) instead of failing the whole pass:

- each service's `/health` JSON and `/ready` status (extractor, graphinator, tableinator, api,
  curator);
- RabbitMQ queue depths, publish/ack rates and DLQ depths from the management API;
- Neo4j node counts per label (`count(n)` on one label is answered from the count store) and
  the relationship total;
- PostgreSQL row counts per table (planner/statistics estimates, replaced by an exact
  `count(*)` for tables small enough that counting is cheap), connections and database size;
- the extractor's per-file progress and records/s (from its /health JSON).

The collector also keeps a short in-memory history of throughput points for the charts.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import httpx
from neo4j import AsyncDriver, AsyncGraphDatabase
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from common.amqp import DATA_TYPES
from common.logging import get_logger
from dashboard.settings import DashboardSettings

log = get_logger(__name__)

T = TypeVar("T")

NEO4J_LABELS: Final = ("Artist", "Label", "Master", "Release", "Genre", "Style", "User")
# data type (routing key / table name) -> Neo4j label
TYPE_LABELS: Final = {"artists": "Artist", "labels": "Label", "masters": "Master", "releases": "Release"}
RECORD_CONSUMERS: Final = ("graphinator", "tableinator")
MAX_HEALTH_BYTES: Final = 64 * 1024

PgPool = AsyncConnectionPool[AsyncConnection[dict[str, Any]]]


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def classify_queue(name: str) -> tuple[str | None, str | None, bool]:
    """`graphinator.artists.dlq` -> ("graphinator", "artists", True)."""
    dlq = name.endswith(".dlq")
    base = name[: -len(".dlq")] if dlq else name
    consumer, _, rest = base.partition(".")
    if consumer in RECORD_CONSUMERS and rest in DATA_TYPES:
        return consumer, rest, dlq
    if consumer == "curator":
        return "curator", None, dlq
    return None, None, dlq


class Collector:
    """Gathers one snapshot per call; owns its HTTP client, Neo4j driver and PostgreSQL pool."""

    def __init__(
        self, settings: DashboardSettings, http: httpx.AsyncClient, neo4j: AsyncDriver, pg_pool: PgPool
    ) -> None:
        self.settings = settings
        self.http = http
        self.neo4j = neo4j
        self.pg_pool = pg_pool
        self.seq = 0
        self.history: deque[dict[str, Any]] = deque(maxlen=settings.history_size)
        self._previous: tuple[float, dict[str, int], dict[str, int]] | None = None

    @classmethod
    async def create(cls, settings: DashboardSettings) -> Collector:
        """Build the clients without waiting for any store: a store that is down is shown as down."""
        timeout = settings.source_timeout_s
        http = httpx.AsyncClient(timeout=httpx.Timeout(timeout), follow_redirects=False)
        neo4j = AsyncGraphDatabase.driver(
            settings.neo4j_uri,
            auth=(settings.neo4j_username, settings.neo4j_password.get_secret_value()),
            max_connection_pool_size=2,
            connection_timeout=timeout,
            connection_acquisition_timeout=timeout,
        )
        pool: PgPool = AsyncConnectionPool(
            settings.postgres_conninfo(),
            min_size=1,
            max_size=2,
            open=False,
            kwargs={"row_factory": dict_row, "connect_timeout": max(1, int(timeout))},
            connection_class=AsyncConnection[dict[str, Any]],
            timeout=timeout,
            reconnect_timeout=0,  # keep retrying in the background forever; never give the pool up
            name="dashboard",
        )
        await pool.open(wait=False)
        return cls(settings, http, neo4j, pool)

    async def close(self) -> None:
        await self.http.aclose()
        await self.neo4j.close()
        await self.pg_pool.close()

    # -- one pass ---------------------------------------------------------------------------

    async def _guard(self, name: str, coro: Awaitable[T]) -> tuple[T | None, str | None]:
        try:
            return await asyncio.wait_for(coro, self.settings.source_timeout_s + 0.5), None
        except Exception as exc:  # a source that fails is shown as down, never crashes the loop
            log.debug("dashboard_source_failed", source=name, error=_error_text(exc))
            return None, _error_text(exc)

    async def collect(self) -> dict[str, Any]:
        started = time.monotonic()
        urls = self.settings.service_urls()
        service_tasks = [self.service(name, url) for name, url in urls.items()]
        (services, queues, neo4j, postgres) = await asyncio.gather(
            asyncio.gather(*service_tasks),
            self.rabbitmq(),
            self.neo4j_counts(),
            self.postgres_counts(),
        )
        by_name = {s["name"]: s for s in services}
        extractor = self.extractor_progress(by_name.get("extractor"))
        now = time.time()
        self.seq += 1
        snapshot: dict[str, Any] = {
            "seq": self.seq,
            "timestamp": datetime.now(UTC).isoformat(),
            "services": services,
            "rabbitmq": queues,
            "queues": queues["queues"],
            "databases": [neo4j, postgres],
            "neo4j": neo4j,
            "postgres": postgres,
            "extractor": extractor,
        }
        snapshot["pipeline"] = self.pipeline(snapshot)
        snapshot["overall"] = self.overall(snapshot)
        point = self.history_point(now, snapshot)
        self.history.append(point)
        snapshot["point"] = point
        snapshot["collected_in_ms"] = round((time.monotonic() - started) * 1000, 1)
        return snapshot

    # -- services ---------------------------------------------------------------------------

    async def _get(self, url: str) -> httpx.Response:
        return await self.http.get(url, headers={"Accept": "application/json"})

    async def service(self, name: str, base_url: str) -> dict[str, Any]:
        base = base_url.rstrip("/")
        (health, health_error), (ready, ready_error) = await asyncio.gather(
            self._guard(f"{name}.health", self._get(f"{base}/health")),
            self._guard(f"{name}.ready", self._get(f"{base}/ready")),
        )
        body: dict[str, Any] | None = None
        if health is not None and health.status_code == 200 and len(health.content) <= MAX_HEALTH_BYTES:
            try:
                parsed = health.json()
                body = parsed if isinstance(parsed, dict) else {"value": parsed}
            except ValueError:
                body = None
        checks: dict[str, Any] | None = None
        if ready is not None:
            try:
                parsed_ready = ready.json()
                if isinstance(parsed_ready, dict) and isinstance(parsed_ready.get("checks"), dict):
                    checks = parsed_ready["checks"]
            except ValueError:
                checks = None
        alive = health is not None and health.status_code == 200
        is_ready = ready is not None and ready.status_code == 200
        if health is None and ready is None:
            status, error = "down", health_error or ready_error
        elif is_ready:
            status, error = "ready", None
        else:
            status = "not_ready"
            if ready is not None:
                failing = {k: v for k, v in (checks or {}).items() if v != "ok"}
                error = f"/ready answered {ready.status_code}" + (f": {failing}" if failing else "")
            else:
                error = f"/ready failed: {ready_error}"
        if health is not None and not alive:
            error = f"/health answered {health.status_code}"
        return {
            "name": name,
            "url": base,
            "status": status,
            "alive": alive,
            "ready": is_ready,
            "health_status": (body or {}).get("status"),
            "health": body,
            "checks": checks,
            "error": error,
        }

    # -- RabbitMQ ---------------------------------------------------------------------------

    async def _queues(self) -> list[dict[str, Any]]:
        s = self.settings
        response = await self.http.get(
            f"{s.rabbitmq_management_url.rstrip('/')}/api/queues",
            auth=(s.rabbitmq_username, s.rabbitmq_password.get_secret_value()),
            params={
                "columns": "name,vhost,messages,messages_ready,messages_unacknowledged,consumers,"
                "message_stats.publish_details.rate,message_stats.ack_details.rate,"
                "message_stats.deliver_get_details.rate,message_stats.publish,message_stats.ack"
            },
        )
        response.raise_for_status()
        raw = response.json()
        if not isinstance(raw, list):
            raise ValueError("management API /api/queues did not return a list")
        queues = []
        for q in raw:
            name = str(q.get("name", ""))
            consumer, data_type, dlq = classify_queue(name)
            stats = q.get("message_stats") or {}
            queues.append(
                {
                    "name": name,
                    "vhost": q.get("vhost"),
                    "consumer": consumer,
                    "data_type": data_type,
                    "dlq": dlq,
                    "messages": _int(q.get("messages")),
                    "messages_ready": _int(q.get("messages_ready")),
                    "messages_unacknowledged": _int(q.get("messages_unacknowledged")),
                    "consumers": _int(q.get("consumers")),
                    "message_rate": round(_num((stats.get("publish_details") or {}).get("rate")), 2),
                    "ack_rate": round(_num((stats.get("ack_details") or {}).get("rate")), 2),
                    "deliver_rate": round(_num((stats.get("deliver_get_details") or {}).get("rate")), 2),
                    "published": _int(stats.get("publish")),
                    "acked": _int(stats.get("ack")),
                }
            )
        queues.sort(key=lambda q: q["name"])
        return queues

    async def rabbitmq(self) -> dict[str, Any]:
        queues, error = await self._guard("rabbitmq", self._queues())
        queue_list = queues or []
        return {
            "name": "RabbitMQ",
            "status": "up" if error is None else "down",
            "error": error,
            "queues": queue_list,
            "totals": {
                "messages": sum(q["messages"] for q in queue_list if not q["dlq"]),
                "dlq_messages": sum(q["messages"] for q in queue_list if q["dlq"]),
                "publish_rate": round(sum(q["message_rate"] for q in queue_list if not q["dlq"]), 2),
                "ack_rate": round(sum(q["ack_rate"] for q in queue_list if not q["dlq"]), 2),
            },
        }

    # -- Neo4j ------------------------------------------------------------------------------

    async def _neo4j(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        async with self.neo4j.session(database=self.settings.neo4j_database, default_access_mode="READ") as s:
            for label in NEO4J_LABELS:
                # One label, no predicate: the planner answers from the count store (O(1)).
                result = await s.run(f"MATCH (n:`{label}`) RETURN count(n) AS c")
                record = await result.single()
                counts[label] = int(record["c"]) if record else 0
            result = await s.run("MATCH ()-[r]->() RETURN count(r) AS c")
            record = await result.single()
            relationships = int(record["c"]) if record else 0
        return {"counts": counts, "relationships": relationships}

    async def neo4j_counts(self) -> dict[str, Any]:
        data, error = await self._guard("neo4j", self._neo4j())
        counts = (data or {}).get("counts", {})
        return {
            "name": "Neo4j",
            "status": "up" if error is None else "down",
            "error": error,
            "counts": counts,
            "nodes": sum(counts.values()),
            "relationships": (data or {}).get("relationships", 0),
        }

    # -- PostgreSQL -------------------------------------------------------------------------

    async def _postgres(self) -> dict[str, Any]:
        async with self.pg_pool.connection(timeout=self.settings.source_timeout_s) as conn:
            cur = await conn.execute(
                """
                SELECT c.relname AS name,
                       GREATEST(c.reltuples, 0)::bigint AS reltuples,
                       COALESCE(s.n_live_tup, 0)::bigint AS live
                FROM pg_class c
                JOIN pg_namespace n ON n.oid = c.relnamespace
                LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
                WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
                ORDER BY c.relname
                """
            )
            rows = await cur.fetchall()
            estimates = {str(r["name"]): max(int(r["reltuples"]), int(r["live"])) for r in rows}
            small = [t for t, est in estimates.items() if est < self.settings.pg_exact_count_below]
            counts = dict(estimates)
            exact: set[str] = set()
            if small:
                query = sql.SQL("SELECT {}").format(
                    sql.SQL(", ").join(
                        sql.SQL("(SELECT count(*) FROM {}) AS {}").format(
                            sql.Identifier("public", t), sql.Identifier(t)
                        )
                        for t in small
                    )
                )
                cur = await conn.execute(query)
                row = await cur.fetchone()
                if row:
                    for t in small:
                        counts[t] = int(row[t])
                        exact.add(t)
            cur = await conn.execute(
                "SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()) AS conns,"
                " pg_database_size(current_database()) AS size"
            )
            info = await cur.fetchone() or {}
        return {
            "counts": counts,
            "exact": sorted(exact),
            "connection_count": int(info.get("conns") or 0),
            "size_bytes": int(info.get("size") or 0),
        }

    async def postgres_counts(self) -> dict[str, Any]:
        data, error = await self._guard("postgres", self._postgres())
        data = data or {}
        counts: dict[str, int] = data.get("counts", {})
        return {
            "name": "PostgreSQL",
            "status": "up" if error is None else "down",
            "error": error,
            "counts": counts,
            "exact": data.get("exact", []),
            "rows": sum(counts.get(t, 0) for t in DATA_TYPES),
            "connection_count": data.get("connection_count", 0),
            "size_bytes": data.get("size_bytes", 0),
        }

    # -- derived views ----------------------------------------------------------------------

    @staticmethod
    def extractor_progress(service: dict[str, Any] | None) -> dict[str, Any]:
        health = (service or {}).get("health") or {}
        files_raw = health.get("files") if isinstance(health.get("files"), dict) else {}
        files: dict[str, dict[str, Any]] = {}
        for data_type, f in (files_raw or {}).items():
            if not isinstance(f, dict):
                continue
            read, total = _int(f.get("bytes_read")), _int(f.get("bytes_total"))
            files[str(data_type)] = {
                # Publishing paused by the extractor's backpressure: the consumers are behind.
                "phase": "waiting for consumers" if f.get("waiting_for_consumers") else f.get("phase"),
                "records": _int(f.get("records")),
                "bytes_read": read,
                "bytes_total": total,
                "progress": round(read / total, 4) if total > 0 else None,
                "records_per_s": round(_num(f.get("records_per_s")), 1),
                "error": f.get("error"),
            }
        return {
            "status": (service or {}).get("status", "down"),
            "version": health.get("version"),
            "files": files,
            "records_per_s": round(sum(f["records_per_s"] for f in files.values()), 1),
            "records": sum(f["records"] for f in files.values()),
        }

    @staticmethod
    def pipeline(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
        """One row per data type: extracted -> queued (per consumer, DLQ) -> stored (Neo4j, PG)."""
        queues = {q["name"]: q for q in snapshot["queues"]}
        files = snapshot["extractor"]["files"]
        rows = []
        for data_type in DATA_TYPES:
            f = files.get(data_type, {})
            consumers = {}
            for consumer in RECORD_CONSUMERS:
                q = queues.get(f"{consumer}.{data_type}", {})
                d = queues.get(f"{consumer}.{data_type}.dlq", {})
                consumers[consumer] = {
                    "messages": q.get("messages", 0),
                    "consumers": q.get("consumers", 0),
                    "ack_rate": q.get("ack_rate", 0.0),
                    "dlq": d.get("messages", 0),
                }
            rows.append(
                {
                    "type": data_type,
                    "phase": f.get("phase"),
                    "extracted": f.get("records", 0),
                    "progress": f.get("progress"),
                    "records_per_s": f.get("records_per_s", 0.0),
                    "queues": consumers,
                    "neo4j": snapshot["neo4j"]["counts"].get(TYPE_LABELS[data_type], 0),
                    "postgres": snapshot["postgres"]["counts"].get(data_type, 0),
                }
            )
        return rows

    @staticmethod
    def overall(snapshot: dict[str, Any]) -> dict[str, Any]:
        stores_down = [
            s["name"]
            for s in (snapshot["neo4j"], snapshot["postgres"], snapshot["rabbitmq"])
            if s["status"] != "up"
        ]
        services = snapshot["services"]
        ready = [s["name"] for s in services if s["status"] == "ready"]
        not_ready = [s["name"] for s in services if s["status"] == "not_ready"]
        down = [s["name"] for s in services if s["status"] == "down"]
        if stores_down:
            status = "degraded"
        elif len(ready) == len(services):
            status = "operational"
        elif not_ready:
            status = "degraded"
        else:
            status = "partial"  # stores fine, some services not running
        return {
            "status": status,
            "stores_down": stores_down,
            "services_ready": ready,
            "services_not_ready": not_ready,
            "services_down": down,
        }

    def history_point(self, now: float, snapshot: dict[str, Any]) -> dict[str, Any]:
        neo4j_counts: dict[str, int] = dict(snapshot["neo4j"]["counts"])
        pg_counts = {t: snapshot["postgres"]["counts"].get(t, 0) for t in DATA_TYPES}
        neo4j_rate: float | None = None
        pg_rate: float | None = None
        previous = self._previous
        # Rates only between two successful readings, so a store outage is not a huge negative spike.
        if previous is not None:
            elapsed = max(now - previous[0], 1e-3)
            if snapshot["neo4j"]["status"] == "up" and previous[1]:
                delta = sum(neo4j_counts.get(k, 0) for k in TYPE_LABELS.values()) - sum(
                    previous[1].get(k, 0) for k in TYPE_LABELS.values()
                )
                neo4j_rate = round(max(delta, 0) / elapsed, 1)
            if snapshot["postgres"]["status"] == "up" and previous[2]:
                pg_rate = round(max(sum(pg_counts.values()) - sum(previous[2].values()), 0) / elapsed, 1)
        self._previous = (
            now,
            neo4j_counts if snapshot["neo4j"]["status"] == "up" else (previous[1] if previous else {}),
            pg_counts if snapshot["postgres"]["status"] == "up" else (previous[2] if previous else {}),
        )
        totals = snapshot["rabbitmq"]["totals"]
        return {
            "t": round(now, 3),
            "seq": snapshot["seq"],
            "extractor_rps": snapshot["extractor"]["records_per_s"],
            "neo4j_rate": neo4j_rate,
            "pg_rate": pg_rate,
            "publish_rate": totals["publish_rate"],
            "ack_rate": totals["ack_rate"],
            "queue_depth": totals["messages"],
            "dlq_depth": totals["dlq_messages"],
            "neo4j_nodes": sum(neo4j_counts.get(k, 0) for k in TYPE_LABELS.values()),
            "pg_rows": sum(pg_counts.values()),
        }
