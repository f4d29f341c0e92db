"""What an upstream says on its own, through one `tollgate mcp serve`, seen by the official Python
MCP client (pinned in requirements.txt) over Streamable HTTP. Driven by cli/tests/mcp.rs:
arguments are the gateway's URL, a phase and the credential files of `alice` and `bob`; prints
one JSON object with what the clients saw, and asserts nothing itself.

- `progress`: alice and bob call server-everything's `trigger-long-running-operation` at the
  same time, each with a progress callback (the client's token is its request id, so both
  clients use the same token); each records the progress it was told of and the result.
- `tools_changed`: alice and bob each hold a session with its GET stream open; alice calls
  `changing.grow`, whose server adds a tool and says its tool list changed; each records the
  `tools/list_changed` notifications it got, and alice lists the tools before and after."""

import asyncio
import json
import sys
import time

import httpx2
from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client


def bearer(path):
    with open(path) as file:
        return {"Authorization": "Bearer " + file.read().strip()}


async def long_call(url, credential, steps, started):
    seen = {"progress": []}

    async def on_progress(progress, total, message):
        seen["progress"].append({"progress": progress, "total": total, "at": time.monotonic() - started})

    async with httpx2.AsyncClient(headers=bearer(credential), timeout=30) as http:
        async with streamable_http_client(url, http_client=http) as (read, write, *_):
            async with ClientSession(read, write, read_timeout_seconds=30) as session:
                await session.initialize()
                result = await session.call_tool(
                    "everything.trigger-long-running-operation",
                    {"duration": 1, "steps": steps},
                    progress_callback=on_progress,
                )
                seen["result"] = "".join(c.text for c in result.content if getattr(c, "type", "") == "text")
                seen["is_error"] = bool(result.is_error)
                seen["done_at"] = time.monotonic() - started
    return seen


async def progress(url, alice, bob):
    started = time.monotonic()
    a, b = await asyncio.gather(long_call(url, alice, 3, started), long_call(url, bob, 5, started))
    return {"alice": a, "bob": b}


async def listening(url, credential, act, done):
    """A session that records the `tools/list_changed` it is sent; `act` runs in it."""
    seen = {"changed": 0}

    async def on_message(message):
        if isinstance(message, types.ToolListChangedNotification):
            seen["changed"] += 1

    async with httpx2.AsyncClient(headers=bearer(credential), timeout=30) as http:
        async with streamable_http_client(url, http_client=http) as (read, write, *_):
            async with ClientSession(read, write, read_timeout_seconds=30, message_handler=on_message) as session:
                await session.initialize()
                # The client opens its GET stream after `initialize`; give it a moment.
                await asyncio.sleep(1)
                await act(session, seen)
                await done.wait()
    return seen


async def tools_changed(url, alice, bob):
    done = asyncio.Event()

    async def grow(session, seen):
        seen["before"] = sorted(t.name for t in (await session.list_tools()).tools)
        await session.call_tool("changing.grow", {"name": "sprout"})
        for _ in range(50):
            if seen["changed"]:
                break
            await asyncio.sleep(0.1)
        seen["after"] = sorted(t.name for t in (await session.list_tools()).tools)
        # Bob's stream has had as long as alice's to get a notification it should not.
        await asyncio.sleep(1)
        done.set()

    async def wait(session, seen):
        seen["tools"] = sorted(t.name for t in (await session.list_tools()).tools)

    a, b = await asyncio.gather(listening(url, alice, grow, done), listening(url, bob, wait, done))
    return {"alice": a, "bob": b}


async def main(url, phase, alice, bob):
    run = {"progress": progress, "tools_changed": tools_changed}[phase]
    print(json.dumps(await run(url, alice, bob)))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
