"""End-to-end extractor throughput: parse (a pool of parse processes) + publish `records`
messages with confirms into this stack's RabbitMQ (quorum queues of both consumers), on a
synthetic current-layout dump. PARSE_WORKERS / MESSAGE_RECORDS from the environment apply.

    eval "$(scripts/stack-env.sh <OFFSET>)"
    python benchmarks/bench_extractor.py [--releases N] [--window W]   (or BENCH_RELEASES)

Empties the record queues before and after (the consumers are not part of this measurement).
Prints ONE JSON line: per type records, seconds and records/s (broker-confirmed), total, and
the peak RSS of the publishing process and of the parse worker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing.forkserver
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

# The extractor's parse workers run this script again (multiprocessing does, for a main script
# run by path): heavy imports are made inside the functions, or each file would pay for them.
# ruff: noqa: PLC0415


async def purge(url: str) -> None:
    import aio_pika

    from common.amqp import DATA_TYPES, declare_all_record_topology

    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await declare_all_record_topology(channel)
        for consumer in ("graphinator", "tableinator"):
            for t in DATA_TYPES:
                for name in (f"{consumer}.{t}", f"{consumer}.{t}.dlq"):
                    queue = await channel.declare_queue(name, passive=True)
                    await queue.purge()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.generate_dump import generate
    from common.amqp import DATA_TYPES
    from extractor.service import ExtractorService
    from extractor.settings import ExtractorSettings

    paths = generate(args.releases, args.out)
    types = [t for t in DATA_TYPES if t in args.types]
    with tempfile.TemporaryDirectory(prefix="bench-extractor-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for t in types:
            (src / paths[t].name).symlink_to(paths[t])
        settings = ExtractorSettings.model_validate(
            {
                "DATA_DIR": str(Path(tmp) / "data"),
                "HEALTH_PORT": 0,
                "PUBLISH_WINDOW": args.window,
                "LOG_LEVEL": "WARNING",
            }
        )
        url = settings.amqp_url.get_secret_value()
        await purge(url)
        service = ExtractorService(settings, source_dir=src, once=True)
        marks: dict[tuple[str, str], float] = {}
        original = service.reporter.set_phase

        def set_phase(data_type: str, phase: str, error: str | None = None) -> None:
            marks[(data_type, phase)] = time.perf_counter()
            original(data_type, phase, error)

        service.reporter.set_phase = set_phase  # type: ignore[method-assign]
        started = time.perf_counter()
        code = await service.run()
        total = time.perf_counter() - started
        status = service.reporter.status()
        await purge(url)
    result: dict[str, Any] = {
        "benchmark": "extractor_end_to_end",
        "releases": args.releases,
        "window": args.window,
        "parse_workers": settings.parse_workers or os.cpu_count(),
        "message_records": settings.message_records,
    }
    per_type = {}
    total_records = 0
    for t in types:
        seconds = marks[(t, "completed")] - marks[(t, "parsing")]
        records = status["files"][t]["records"]
        total_records += records
        per_type[t] = {
            "records": records,
            "seconds": round(seconds, 2),
            "records_per_s": round(records / seconds),
        }
    result["types"] = per_type
    result["exit_code"] = code
    result["total_records"] = total_records
    result["total_seconds"] = round(total, 2)
    result["total_records_per_s"] = round(total_records / total)
    # The parse workers are children of multiprocessing's fork server: stop it, so that their CPU
    # and peak RSS are counted among ours (there is no public API for this).
    multiprocessing.forkserver._forkserver._stop()  # type: ignore[attr-defined]
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["publisher_cpu_s"] = round(me.ru_utime + me.ru_stime, 1)
    result["parse_workers_cpu_s"] = round(children.ru_utime + children.ru_stime, 1)
    result["peak_rss_mb"] = round(me.ru_maxrss / 1024, 1)
    result["worker_peak_rss_mb"] = round(children.ru_maxrss / 1024, 1)
    result["loadavg_1m"] = os.getloadavg()[0]
    return result


def main() -> None:
    from benchmarks.generate_dump import DEFAULT_OUT
    from common.amqp import DATA_TYPES
    from common.logging import configure_logging

    parser = argparse.ArgumentParser()
    parser.add_argument("--releases", type=int, default=int(os.environ.get("BENCH_RELEASES", "100000")))
    parser.add_argument("--window", type=int, default=int(os.environ.get("PUBLISH_WINDOW", "10000")))
    parser.add_argument("--types", default=",".join(DATA_TYPES))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    args.types = args.types.split(",")
    configure_logging("bench-extractor", "WARNING", "json")
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
