"""`python -m graphinator`: consume records into Neo4j until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

from common.startup import run_worker
from graphinator.service import run

if __name__ == "__main__":
    sys.exit(run_worker("graphinator", run))
