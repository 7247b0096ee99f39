"""A real local HTTP server that imitates data.discogs.com (design §8).

    host = DumpHost()
    host.add_version("20260801", {"discogs_20260801_artists.xml.gz": data, ...})   # + CHECKSUM.txt
    await host.start()            # http://127.0.0.1:<free port>/
    ...
    await host.stop()

or `async with DumpHost() as host:`. Pages and links are shaped like the real host:
`/` lists year folders (`?prefix=data%2F<YYYY>%2F`), a year page lists files
(`?download=data%2F<YYYY>%2F<file>`), a download serves the bytes.

Faults, each for the next `times` requests of one file:
- `rate_limit(name, times, retry_after)`: 429 with Retry-After;
- `server_error(name, times)`: 503;
- `cut_after(name, nbytes, times)`: send `nbytes` of the body (with the full Content-Length), then
  drop the connection;
- `corrupt(name, times)`: serve bytes that do not match the checksum.
`range_support=False` makes the host ignore Range (answer 200 with the whole body), like the real
one. `requests` records (name, status, range header) of every file request.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from aiohttp import web

from tests.conftest import free_port


@dataclass
class _Fault:
    kind: str
    times: int
    arg: Any = None


@dataclass
class FileRequest:
    name: str
    status: int
    range: str | None
    at: float = field(default_factory=time.monotonic)  # when it was answered


@dataclass
class DumpHost:
    range_support: bool = True
    files: dict[str, bytes] = field(default_factory=dict)  # name -> bytes (CHECKSUM included)
    requests: list[FileRequest] = field(default_factory=list)
    page_requests: int = 0
    _faults: dict[str, list[_Fault]] = field(default_factory=lambda: defaultdict(list))
    _runner: web.AppRunner | None = None
    port: int = 0

    # --- content -------------------------------------------------------------------------------

    def add_version(
        self,
        version: str,
        files: dict[str, bytes],
        *,
        checksum: bool = True,
        checksum_overrides: dict[str, str] | None = None,
    ) -> None:
        """Publish `files` (name -> bytes) of `version`, plus its CHECKSUM.txt unless `checksum=False`."""
        self.files.update(files)
        if checksum:
            lines = []
            for name, data in files.items():
                digest = (checksum_overrides or {}).get(name) or hashlib.sha256(data).hexdigest()
                lines.append(f"{digest} {name}\n")
            self.files[f"discogs_{version}_CHECKSUM.txt"] = "".join(lines).encode()

    def rate_limit(self, name: str, times: int = 1, retry_after: str = "1") -> None:
        self._faults[name].append(_Fault("429", times, retry_after))

    def server_error(self, name: str, times: int = 1) -> None:
        self._faults[name].append(_Fault("503", times))

    def cut_after(self, name: str, nbytes: int, times: int = 1) -> None:
        self._faults[name].append(_Fault("cut", times, nbytes))

    def corrupt(self, name: str, times: int = 1) -> None:
        self._faults[name].append(_Fault("corrupt", times))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def statuses(self, name: str) -> list[int]:
        return [r.status for r in self.requests if r.name == name]

    # --- server --------------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> DumpHost:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _years(self) -> list[str]:
        return sorted({m.group(1)[:4] for n in self.files if (m := re.match(r"discogs_(\d{8})_", n))})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        if "download" in query:
            return await self._download(request, query["download"])
        self.page_requests += 1
        prefix = query.get("prefix")
        if prefix is None or prefix == "data/":
            links = "\n".join(
                f'<a href="?prefix=data%2F{y}%2F">{y}/</a>' for y in sorted(self._years(), reverse=True)
            )
            return web.Response(text=_page(links), content_type="text/html")
        match = re.fullmatch(r"data/(\d{4})/", prefix)
        if not match:
            return web.Response(status=404, text="no such prefix")
        year = match.group(1)
        rows = []
        for name in sorted(self.files):
            if name.startswith(f"discogs_{year}"):
                key = quote(f"data/{year}/{name}", safe="")
                rows.append(
                    f'2026-01-01 00:00:00  {len(self.files[name])} B  <a href="?download={key}">{name}</a>'
                )
        links = '<a href="?prefix=data%2F">../</a>\n' + "\n".join(rows)
        return web.Response(text=_page(links), content_type="text/html")

    def _take_fault(self, name: str) -> _Fault | None:
        faults = self._faults.get(name)
        if not faults:
            return None
        fault = faults[0]
        fault.times -= 1
        if fault.times <= 0:
            faults.pop(0)
        return fault

    async def _download(self, request: web.Request, key: str) -> web.StreamResponse:
        name = key.rsplit("/", 1)[-1]
        range_header = request.headers.get("Range")
        data = self.files.get(name)
        if data is None:
            self.requests.append(FileRequest(name, 404, range_header))
            return web.Response(status=404, text="not found")
        fault = self._take_fault(name)
        if fault is not None and fault.kind == "429":
            self.requests.append(FileRequest(name, 429, range_header))
            return web.Response(status=429, text="slow down", headers={"Retry-After": str(fault.arg)})
        if fault is not None and fault.kind == "503":
            self.requests.append(FileRequest(name, 503, range_header))
            return web.Response(status=503, text="unavailable")
        if fault is not None and fault.kind == "corrupt":
            data = bytes(b ^ 0x55 for b in data[:64]) + data[64:]
        start = 0
        status = 200
        headers = {"Content-Type": "application/octet-stream"}
        if self.range_support and range_header:
            m = re.fullmatch(r"bytes=(\d+)-", range_header.strip())
            if m:
                start = int(m.group(1))
                if start >= len(data):
                    self.requests.append(FileRequest(name, 416, range_header))
                    return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
                status = 206
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        if self.range_support:
            headers["Accept-Ranges"] = "bytes"
        body = data[start:]
        self.requests.append(FileRequest(name, status, range_header))
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = len(body)
        await response.prepare(request)
        if fault is not None and fault.kind == "cut":
            await response.write(body[: int(fault.arg)])
            transport = request.transport
            if transport is not None:
                transport.close()
            return response
        for i in range(0, len(body), 256 * 1024):
            await response.write(body[i : i + 256 * 1024])
        await response.write_eof()
        return response


def _page(links: str) -> str:
    return (
        "<html><head><title>Discogs Data</title></head><body>"
        "<h2>Discogs Data</h2><pre>Last Modified  Size  Name\n"
        f"{links}\n</pre></body></html>"
    )
