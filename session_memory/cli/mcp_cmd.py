"""`mcp`: serve the memory to agents over the Model Context Protocol (stdio)."""

from __future__ import annotations

import click

from session_memory.cli.common import Context, handle_errors, pass_ctx


@click.command()
@pass_ctx
@handle_errors
def mcp(ctx: Context) -> None:
    """Serve the memory to agents over MCP on stdin/stdout: read-only, redacted.

    The agent tool starts it (see the README for how to add it to each tool).
    """
    from session_memory import mcp as server  # the SDK loads only for this command

    server.serve(ctx.settings)


def register(cli: click.Group) -> None:
    cli.add_command(mcp)
