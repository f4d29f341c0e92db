"""Two agents through one `tollgate mcp serve`, with the official Python MCP client (pinned in
requirements.txt) over Streamable HTTP, each with its own credential as a bearer token. Driven
by cli/tests/mcp.rs: arguments are the gateway's URL, a phase (`first` or `restarted`) and the
credential files; prints one JSON object with what the clients saw, and asserts nothing itself."""

import asyncio
import json
import sys

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


def bearer(path):
    with open(path) as file:
        return {"Authorization": "Bearer " + file.read().strip()}


async def call(session, name, arguments):
    try:
        result = await session.call_tool(name, arguments)
        text = "".join(c.text for c in result.content if getattr(c, "type", "") == "text")
        return {"is_error": bool(result.is_error), "text": text, "meta": result.meta}
    except MCPError as error:
        return {"error": error.error.code, "message": error.error.message}


async def session_of(url, credential, steps):
    async with httpx2.AsyncClient(headers=bearer(credential), timeout=30) as http:
        async with streamable_http_client(url, http_client=http, terminate_on_close=False) as (read, write, *_):
            async with ClientSession(read, write, read_timeout_seconds=30) as session:
                init = await session.initialize()
                seen = {"protocol": init.protocol_version}
                seen["tools"] = sorted(t.name for t in (await session.list_tools()).tools)
                for key, name, arguments in steps:
                    seen[key] = await call(session, name, arguments)
                return seen


async def status(url, headers):
    """The HTTP status of a plain initialize request with these headers."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "probe", "version": "1"}},
    }
    async with httpx2.AsyncClient(timeout=30) as http:
        response = await http.post(
            url, json=body, headers={**headers, "Accept": "application/json, text/event-stream"}
        )
        return response.status_code


async def main(url, phase, researcher, curator):
    report = {}
    if phase == "first":
        report["researcher"] = await session_of(
            url,
            researcher,
            [
                ("echo", "everything.echo", {"message": "hello"}),
                ("secret", "everything.echo", {"message": "the secret is 42"}),
                ("echo2", "everything.echo", {"message": "two"}),
                ("search", "memory.search_nodes", {"query": "tollgate"}),
                ("sum", "everything.get-sum", {"a": 2, "b": 3}),
            ],
        )
        # A second session of the same agent: the rate limit (3 per minute) still counts.
        report["researcher_again"] = await session_of(
            url,
            researcher,
            [
                ("echo3", "everything.echo", {"message": "three"}),
                ("echo4", "everything.echo", {"message": "four"}),
            ],
        )
        report["curator"] = await session_of(
            url,
            curator,
            [
                # A list field inside each element of a list, through to the real server.
                (
                    "create",
                    "memory.create_entities",
                    {"entities": [{"name": "Ada", "entityType": "person", "observations": ["wrote the first program"]}]},
                ),
                ("graph", "memory.read_graph", {}),
                ("hidden1", "everything.echo", {"message": "x"}),
                ("hidden2", "everything.echo", {"message": "x"}),
                ("hidden3", "everything.echo", {"message": "x"}),
            ],
        )
    report["curator_status"] = await status(url, bearer(curator))
    report["researcher_status"] = await status(url, bearer(researcher))
    report["anonymous_status"] = await status(url, {})
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
