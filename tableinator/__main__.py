"""`python -m tableinator`: consume records into PostgreSQL until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

from common.startup import run_worker
from tableinator.service import run

if __name__ == "__main__":
    sys.exit(run_worker("tableinator", run))
