"""Endpoints that stand in for a backend in front-end tests."""

from __future__ import annotations

from aiohttp import web

from moorage_core.supervising import TaskSupervisor


class Idle:
    """Endpoints that answer every MCP path with 200 and are always ready."""

    def add_routes(self, app: web.Application) -> None:
        async def ok(_: web.Request) -> web.Response:
            return web.Response(text="mcp")

        app.router.add_post("/mcp", ok)

    async def start(self, supervisor: TaskSupervisor | None = None) -> None:
        return None

    async def close_streams(self) -> None:
        return None

    def unanswered(self) -> int:
        return 0

    async def stop(self) -> None:
        return None

    def is_ready(self) -> bool:
        return True

    def announcer(self) -> None:
        return None

    def rechecker(self) -> None:
        return None
