#!/usr/bin/env python3
"""The engine's MCP server face, driven by a real MCP client (the `mcp` package from PyPI).

Usage: python3 Tests/mcp/test_mcp_face.py PATH/TO/spaces

Starts `spaces serve --mcp` (and plain `spaces serve`, which switches to MCP when the client's initialize names
an MCP revision) and uses the session's space through its tools: initialize, list the tools, write a file, run
a command that reads it, run TypeScript, read a file, and have operations denied. Needs what the engine needs
(root or unprivileged user namespaces). Prints each check; exits 1 when one fails.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import anyio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

SUPPORTED = ("2024-11-05", "2025-03-26", "2025-06-18")
BUILTIN = ["read_file", "write_file", "edit_file", "delete_file", "list_files", "run_command", "run_typescript"]

failures = []


def check(what, condition, detail=""):
    print(("ok    " if condition else "FAIL  ") + what + ("" if condition else f"\n      {detail}"))
    if not condition:
        failures.append(what)


def text_of(result):
    return "".join(block.text for block in result.content if getattr(block, "type", "") == "text")


async def call(session, name, arguments):
    result = await session.call_tool(name, arguments)
    return text_of(result), bool(result.is_error)


def session_with(binary, arguments, work):
    state = os.path.join(work, "state")
    params = StdioServerParameters(
        command=binary, args=["serve", "--state-dir", state, "--log-level", "warning", *arguments]
    )
    log = open(os.path.join(work, "engine.log"), "a")
    return params, log, state


def echo_server():
    """Fixtures/http/echo_server.py on a free port of 127.0.0.1: the API behind an http capability."""
    fixture = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Fixtures", "http", "echo_server.py")
    server = subprocess.Popen([sys.executable, fixture, "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return server, int(server.stdout.readline())


async def mcp_flag(binary, work):
    print("== spaces serve --mcp --space-config FILE")
    server, port = echo_server()
    config = os.path.join(work, "space.json")
    with open(config, "w") as file:
        json.dump(
            {
                "name": "mcp-test",
                "policy": {"commands": {"ask": ["echo *"], "deny": ["curl *"]}},
                "workspace": {"files": {"hello.txt": "hi from the config\n"}},
                "capabilities": [
                    {
                        "name": "crm",
                        "description": "the customer database",
                        "handler": {"kind": "http", "baseUrl": f"http://127.0.0.1:{port}"},
                        "methods": {
                            "customer": {
                                "description": "Find one customer by id.",
                                "effect": "read",
                                "http": {"method": "GET", "path": "/customers/{id}"},
                                "params": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]},
                            },
                            "wipe": {
                                "description": "Delete every customer.",
                                "effect": "destructive",
                                "http": {"method": "POST", "path": "/echo"},
                            },
                        },
                    }
                ],
            },
            file,
        )
    try:
        await mcp_session(binary, work, config)
    finally:
        server.stdin.close()
        server.wait()


async def mcp_session(binary, work, config):
    params, log, state = session_with(binary, ["--mcp", "--space-config", config], work)
    with log:
        async with stdio_client(params, errlog=log) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                check("initialize negotiates a supported revision", init.protocol_version in SUPPORTED,
                      init.protocol_version)
                check("serverInfo names the engine", init.server_info.name == "agent-spaces", init.server_info)
                check("the server offers tools", init.capabilities.tools is not None, init.capabilities)
                check("instructions say what the tools act on", "/workspace" in (init.instructions or ""),
                      init.instructions)
                await session.send_ping()
                check("ping answers", True)

                tools = (await session.list_tools()).tools
                names = [tool.name for tool in tools]
                check("tools/list has the built-in tools and one per capability method",
                      names == BUILTIN + ["crm_customer", "crm_wipe"], names)
                check("every inputSchema is an object schema",
                      all(tool.input_schema.get("type") == "object" for tool in tools))
                check("every tool is described", all(len(tool.description or "") > 40 for tool in tools))

                text, error = await call(session, "write_file", {"path": "notes/today.txt", "content": "hello mcp\n"})
                check("write_file writes", text == "Wrote 10 bytes to notes/today.txt." and not error, text)
                text, error = await call(session, "run_command", {"command": "cat notes/today.txt hello.txt"})
                check("run_command reads the written file and the config's file",
                      text == "hello mcp\nhi from the config" and not error, text)
                text, error = await call(
                    session, "run_typescript",
                    {"source": "const t = await Bun.file('notes/today.txt').text();\nconsole.log(t.trim().toUpperCase())"})
                check("run_typescript runs with Bun", text == "HELLO MCP" and not error, text)
                text, error = await call(session, "read_file", {"path": "notes/today.txt"})
                check("read_file returns the content", text == "hello mcp\n" and not error, text)
                text, error = await call(session, "list_files", {})
                check("list_files lists, directories with /",
                      {"hello.txt", "notes/"} <= set(text.split("\n")) and not error, text)
                text, error = await call(session, "list_files", {"path": "notes", "recursive": True})
                check("list_files lists a directory's contents", text == "notes/today.txt" and not error, text)

                text, error = await call(session, "crm_customer", {"id": 4})
                check("a capability tool calls the method through the space's bridge",
                      not error and json.loads(text).get("id") == 4, text)
                with anyio.fail_after(10):
                    text, error = await call(session, "crm_wipe", {})
                check("a capability call the policy asks about is denied at once, inside the program",
                      error and "APPROVAL_DENIED" in text and "cannot ask" in text and "capabilities.allow" in text, text)

                text, error = await call(session, "run_command", {"command": "curl https://example.com"})
                check("a denied command is an error naming the rule", error and "rule: commands.deny: curl *" in text,
                      text)
                text, error = await call(session, "read_file", {"path": "/etc/passwd"})
                check("a path outside the workspace is denied", error and "workspace.boundary" in text, text)
                with anyio.fail_after(10):
                    text, error = await call(session, "run_command", {"command": "echo needs approval"})
                check("an asked command is denied at once: nobody can approve over MCP",
                      error and "cannot ask" in text and "commands.ask" in text, text)

                try:
                    await session.call_tool("read_file", {})
                    check("missing arguments are refused", False, "no error")
                except MCPError as refusal:
                    field = (refusal.data or {}).get("field")
                    check("missing arguments get -32602 naming the field",
                          refusal.code == -32602 and field == "params.arguments.path", (refusal.code, refusal.data))
                try:
                    await session.call_tool("no_such_tool", {})
                    check("an unknown tool is refused", False, "no error")
                except MCPError as refusal:
                    check("an unknown tool gets -32602", refusal.code == -32602, refusal)
    spaces = os.listdir(os.path.join(state, "spaces")) if os.path.isdir(os.path.join(state, "spaces")) else []
    check("the session's space is destroyed at the end of input", spaces == [], spaces)


async def negotiated(binary, work):
    print("== spaces serve --policy strict (no --mcp): the client's MCP initialize switches the session")
    params, log, state = session_with(binary, ["--policy", "strict"], work)
    with log:
        async with stdio_client(params, errlog=log) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                check("initialize answers an MCP result", init.protocol_version in SUPPORTED, init.protocol_version)
                check("the instructions name the policy", '"strict"' in (init.instructions or ""), init.instructions)
                names = [tool.name for tool in (await session.list_tools()).tools]
                check("tools/list answers", names == BUILTIN, names)
                text, error = await call(session, "list_files", {})
                check("a strict space can be read", not error and text == "(empty directory)", text)
                text, error = await call(session, "write_file", {"path": "a.txt", "content": "x"})
                check("a strict space refuses writes: isError with the rule",
                      error and text.startswith("Denied by the space's policy") and "\nrule: " in text, text)


async def main(binary):
    work = tempfile.mkdtemp(prefix="spaces-mcp-")
    try:
        await mcp_flag(binary, work)
        await negotiated(binary, work)
    finally:
        log = os.path.join(work, "engine.log")
        if failures and os.path.exists(log):
            print("== engine log\n" + open(log).read())
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    anyio.run(main, os.path.abspath(sys.argv[1]))
    print(f"{len(failures)} check(s) failed" if failures else "all MCP face checks passed")
    sys.exit(1 if failures else 0)
