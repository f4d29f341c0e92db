"""An agent's session through `tollgate mcp` with the official Python MCP client (pinned in
requirements.txt), against the reference file system server. Driven by cli/tests/mcp.rs: the
gateway command line comes as arguments, the workspace as WORKSPACE; prints one JSON object with
what the client saw, and asserts nothing itself (the Rust test does)."""

import asyncio
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError


def seen(result):
    return {
        "is_error": bool(result.is_error),
        "text": "".join(c.text for c in result.content if getattr(c, "type", "") == "text"),
        "meta": result.meta,
    }


async def call(session, name, arguments):
    try:
        return seen(await session.call_tool(name, arguments))
    except MCPError as error:
        return {"error": error.error.code, "message": error.error.message}


async def main():
    server = StdioServerParameters(command=sys.argv[1], args=sys.argv[2:], cwd=os.environ["WORKSPACE"])
    report = {}
    async with stdio_client(server) as (read, write):
        async with ClientSession(read, write, read_timeout_seconds=30) as session:
            init = await session.initialize()
            report["protocol"] = init.protocol_version
            report["capabilities"] = sorted(init.capabilities.model_dump(exclude_none=True).keys())
            report["tools"] = sorted(t.name for t in (await session.list_tools()).tools)
            report["read"] = await call(session, "read_text_file", {"path": "docs/readme.md"})
            # An optional argument the policy declares (`head?`) passes through to the server.
            report["read_head"] = await call(session, "read_text_file", {"path": "docs/readme.md", "head": 1})
            # A list argument: every path is decided, and forwarded, in normal form.
            report["read_many"] = await call(
                session, "read_multiple_files", {"paths": ["docs/readme.md", "docs/./guide/../readme.md"]}
            )
            report["write_docs"] = await call(session, "write_file", {"path": "docs/readme.md", "content": "defaced"})
            report["climb"] = await call(session, "read_text_file", {"path": "docs/../../etc/passwd"})
            report["write_out"] = await call(session, "write_file", {"path": "out/summary.md", "content": "all good"})
            # A list of objects: an edit of the output is allowed (no private key in any edit).
            report["edit_out"] = await call(
                session, "edit_file", {"path": "out/summary.md", "edits": [{"oldText": "good", "newText": "great"}]}
            )
            report["private_key"] = await call(
                session,
                "write_file",
                {"path": "out/id_rsa", "content": "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n"},
            )
            report["hidden"] = await call(session, "move_file", {"source": "docs/readme.md", "destination": "out/x"})
            # Keep trying a denied write: the failure response revokes the agent, and the session ends.
            attempts = []
            for _ in range(10):
                outcome = await call(session, "write_file", {"path": "docs/readme.md", "content": "again"})
                attempts.append(outcome)
                if "error" in outcome:
                    break
            report["attempts"] = attempts
            try:
                await asyncio.wait_for(session.list_tools(), timeout=10)
                report["after_end"] = "answered"
            except Exception as error:  # the gateway has exited: the connection is gone
                report["after_end"] = type(error).__name__
            print(json.dumps(report), flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except BaseException as error:  # the transport's own teardown after the gateway exited
        if not isinstance(error, (KeyboardInterrupt, SystemExit)):
            print(json.dumps({"teardown": type(error).__name__}), file=sys.stderr)
