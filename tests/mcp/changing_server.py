"""An MCP server over stdio (or, given a port, over Streamable HTTP at /mcp), written with the official Python SDK (pinned in requirements.txt),
whose tool list changes on request: `grow` adds a tool of the name it is given and sends
`notifications/tools/list_changed`, as a server does when it loads a plugin. The reference
servers send that notification only once, right after they are initialized, which is before any
agent reaches the HTTP gateway; this one sends it when a test asks."""

import sys

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("changing")


@server.tool()
async def grow(name: str, ctx: Context) -> str:
    """Adds a tool called `name` and tells the client the tool list changed."""

    def grown() -> str:
        return f"{name} is here"

    server.add_tool(grown, name=name)
    await ctx.session.send_tool_list_changed()
    return f"added {name}"


if __name__ == "__main__":
    if len(sys.argv) > 1:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
    else:
        server.run()
