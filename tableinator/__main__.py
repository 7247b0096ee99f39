"""`python -m tableinator`: consume records into PostgreSQL until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio

from tableinator.service import run

if __name__ == "__main__":
    asyncio.run(run())
