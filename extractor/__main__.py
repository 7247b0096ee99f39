"""`python -m extractor [--source DIR | --source FILE [FILE ...]] [--once] [--reprocess]`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from pydantic import ValidationError

from common.logging import configure_logging
from common.startup import invalid_settings
from extractor.discovery import version_of_files
from extractor.service import serve
from extractor.settings import ExtractorSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="extractor", description="Discogs dump extractor")
    parser.add_argument(
        "--source",
        type=Path,
        nargs="+",
        default=None,
        metavar="PATH",
        help="a local directory of discogs_YYYYMMDD_<type>.xml[.gz], or such files of one version",
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
    try:
        settings = ExtractorSettings()
    except ValidationError as exc:
        return invalid_settings("extractor", exc)
    if args.data_dir is not None:
        settings.data_dir = args.data_dir
    configure_logging("extractor", settings.log_level, settings.log_format, settings.environment)
    sources: list[Path] = args.source or ([settings.source_dir] if settings.source_dir is not None else [])
    source_dir: Path | None = None
    source_files: list[Path] | None = None
    if len(sources) == 1 and sources[0].is_dir():
        source_dir = sources[0]
    elif sources:
        try:
            version_of_files(sources)
        except ValueError as exc:
            parser.error(f"--source: {exc}")
        source_files = sources
    running = serve(
        settings,
        source_dir=source_dir,
        source_files=source_files,
        once=args.once,
        reprocess=args.reprocess,
    )
    return asyncio.run(running)


if __name__ == "__main__":
    sys.exit(main())
