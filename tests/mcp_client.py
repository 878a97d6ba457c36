"""The real `session-memory mcp` as a subprocess, driven by the SDK's own stdio client
(ClientSession over stdio_client) from plain synchronous code: the client's event loop
runs in a thread of its own (anyio's blocking portal)."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


class ToolFailed(Exception):
    pass


class Client:
    def __init__(self, portal: BlockingPortal, session: ClientSession) -> None:
        self.portal = portal
        self.session = session

    def list_tools(self) -> list[Any]:
        return list(self.portal.call(self.session.list_tools).tools)

    def raw(self, name: str, arguments: dict[str, Any]) -> Any:
        """The CallToolResult as it came."""
        return self.portal.call(self.session.call_tool, name, arguments)

    def text(self, name: str, arguments: dict[str, Any]) -> tuple[bool, str]:
        """(is_error, the text of every content block)."""
        result = self.raw(name, arguments)
        return bool(result.is_error), "".join(getattr(c, "text", "") for c in result.content)

    def call(self, name: str, **arguments: Any) -> Any:
        """A tool's JSON answer; ToolFailed with its message on a tool error."""
        failed, text = self.text(name, arguments)
        if failed:
            raise ToolFailed(text)
        return json.loads(text)


@contextlib.contextmanager
def mcp_client(env: dict[str, str]) -> Iterator[Client]:
    """A connected, initialized client of a fresh server process; the process is closed
    (and reaped) when the block ends."""
    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "session_memory", "mcp"], env=env)
    with start_blocking_portal() as portal, \
            portal.wrap_async_context_manager(stdio_client(params)) as (read, write), \
            portal.wrap_async_context_manager(ClientSession(read, write)) as session:
        portal.call(session.initialize)
        yield Client(portal, session)
