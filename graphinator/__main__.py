"""`python -m graphinator`: consume records into Neo4j until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio

from graphinator.service import run

if __name__ == "__main__":
    asyncio.run(run())
