"""`python -m extractor [--source DIR] [--once] [--reprocess]`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from common.logging import configure_logging
from extractor.service import serve
from extractor.settings import ExtractorSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="extractor", description="Discogs dump extractor")
    parser.add_argument(
        "--source", type=Path, default=None, help="local directory of discogs_YYYYMMDD_<type>.xml[.gz]"
    )
    parser.add_argument(
        "--once", action="store_true", help="run one cycle, then exit (0 = version completed)"
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="where dumps and state markers live")
    parser.add_argument(
        "--reprocess",
        action="store_true",
        help="extract the chosen version again even if it was completed (after an upgrade that "
        "changes what the consumers write, or to refill an emptied store)",
    )
    args = parser.parse_args(argv)
    settings = ExtractorSettings()
    if args.data_dir is not None:
        settings.data_dir = args.data_dir
    configure_logging("extractor", settings.log_level, settings.log_format, settings.environment)
    source = args.source if args.source is not None else settings.source_dir
    if source is not None and not source.is_dir():
        parser.error(f"--source {source} is not a directory")
    return asyncio.run(serve(settings, source_dir=source, once=args.once, reprocess=args.reprocess))


if __name__ == "__main__":
    sys.exit(main())
