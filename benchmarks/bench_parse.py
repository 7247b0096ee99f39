"""Parse-only throughput of the extractor's parser (gzip + lxml + normalisation + canonical JSON +
sha256) per data type, on a synthetic current-layout dump: the serial parser on one core, then
the parallel one (extractor.chunked) on PARSE_WORKERS processes (default: one per core), writing
the record index as the extractor does, then the parallel one again with that index as the
baseline (`unchanged_records_per_s`: a monthly update where nothing changed, extractor.baseline).

    python benchmarks/bench_parse.py [--releases N]      (or BENCH_RELEASES; default 100000)

Prints ONE JSON line: per type records, seconds, records/s, MB/s of gzip and of XML, and the
process's peak RSS.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import tempfile
import time
from pathlib import Path

from benchmarks.generate_dump import DEFAULT_OUT, generate
from extractor.baseline import IndexWriter
from extractor.chunked import iter_records_parallel
from extractor.parser import iter_records


def xml_size(path: Path) -> int:
    total = 0
    with gzip.open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            total += len(chunk)
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--releases", type=int, default=int(os.environ.get("BENCH_RELEASES", "100000")))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    paths = generate(args.releases, args.out)
    result: dict[str, object] = {"benchmark": "extractor_parse", "releases": args.releases}
    per_type: dict[str, dict[str, object]] = {}
    for data_type, path in paths.items():
        gz_bytes = path.stat().st_size
        xml_bytes = xml_size(path)
        started = time.perf_counter()
        cpu = time.process_time()
        n = 0
        for _ in iter_records(path, data_type):
            n += 1
        seconds = time.perf_counter() - started
        cpu_s = time.process_time() - cpu
        per_type[data_type] = {
            "records": n,
            "seconds": round(seconds, 2),
            "records_per_s": round(n / seconds),
            "records_per_cpu_s": round(n / cpu_s) if cpu_s else None,
            "gz_mb_per_s": round(gz_bytes / seconds / 1e6, 1),
            "xml_mb_per_s": round(xml_bytes / seconds / 1e6, 1),
        }
        workers = int(os.environ.get("PARSE_WORKERS", "0")) or os.cpu_count() or 1
        with tempfile.TemporaryDirectory(prefix="bench-parse-index-") as index:
            writer = IndexWriter(Path(index), data_type)
            started = time.perf_counter()
            n = 0
            for rec in iter_records_parallel(path, data_type, workers=workers):
                n += 1
                if rec.id is not None and rec.sha256 is not None:
                    writer.add(rec.id, rec.raw_hash, rec.sha256)
            writer.finish()
            seconds = time.perf_counter() - started
            started = time.perf_counter()
            same = sum(
                r.unchanged
                for r in iter_records_parallel(path, data_type, workers=workers, baseline=Path(index))
            )
            unchanged_s = time.perf_counter() - started
        per_type[data_type]["parallel"] = {
            "workers": workers,
            "records_per_s": round(n / seconds),
            "xml_mb_per_s": round(xml_bytes / seconds / 1e6, 1),
            "unchanged": same,
            "unchanged_records_per_s": round(n / unchanged_s),
        }
    result["types"] = per_type
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["loadavg_1m"] = os.getloadavg()[0]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
