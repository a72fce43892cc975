"""The loopback aiohttp server under the project's fake external APIs (CRMs, schema registry)."""

from __future__ import annotations

from aiohttp import web


class FakeServer:
    """Subclasses build their routes in ``app()``; ``start`` serves them on a free port by default."""

    path = "/"
    _runner: web.AppRunner | None = None
    port: int | None = None

    def app(self) -> web.Application:
        raise NotImplementedError

    async def start(self, host: str = "127.0.0.1", port: int = 0):
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
