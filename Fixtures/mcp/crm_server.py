#!/usr/bin/env python3
"""A fake CRM as a real MCP server over stdio, for the tests of the engine's mcp capability handler.

Built with the `mcp` package from PyPI: `MCPServer` in mcp 2.x, `FastMCP` (its old name) in mcp 1.x. Holds 1,000
deterministic customers (id 1..1000). Tools:

    search(q?, tier?, limit?)   the matching customers (read-only)
    get_customer(id)            one customer; an error for an unknown id (read-only)
    delete_customer(id)         removes one (destructive)
    whoami()                    the CRM_TOKEN the server was started with (read-only)
    slow_report(seconds)        answers after `seconds` (read-only; for timeouts)
"""

import os
import time
from typing import Optional

from typing_extensions import TypedDict

try:  # mcp 2.x
    from mcp.server.mcpserver import MCPServer as Server
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp_types import ToolAnnotations

    READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False)
    DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True)
except ImportError:  # mcp 1.x
    from mcp.server.fastmcp import FastMCP as Server
    from mcp.server.fastmcp.exceptions import ToolError
    from mcp.types import ToolAnnotations

    READ_ONLY = ToolAnnotations(readOnlyHint=True, destructiveHint=False)
    DESTRUCTIVE = ToolAnnotations(readOnlyHint=False, destructiveHint=True)

COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vehement", "Soylent", "Tyrell"]
TIERS = ["gold", "silver", "bronze"]
REGIONS = ["emea", "amer", "apac", "latam"]


class Customer(TypedDict):
    id: int
    name: str
    tier: str
    region: str
    annualRevenue: int


def make_customer(customer_id: int) -> Customer:
    return {
        "id": customer_id,
        "name": f"{COMPANIES[customer_id % 10]} #{customer_id}",
        "tier": TIERS[customer_id % 3],
        "region": REGIONS[customer_id % 4],
        "annualRevenue": customer_id * 1000 + (customer_id % 7) * 125,
    }


CUSTOMERS: dict[int, Customer] = {i: make_customer(i) for i in range(1, 1001)}

server = Server("crm")


@server.tool(description="Customers whose name contains q (any case), of the given tier, at most limit of them.",
             annotations=READ_ONLY)
def search(q: Optional[str] = None, tier: Optional[str] = None, limit: Optional[int] = None) -> list[Customer]:
    found = [
        c for c in CUSTOMERS.values()
        if (q is None or q.lower() in c["name"].lower()) and (tier is None or c["tier"] == tier)
    ]
    return found if limit is None else found[:limit]


@server.tool(description="One customer by id.", annotations=READ_ONLY)
def get_customer(id: int) -> Customer:
    if id not in CUSTOMERS:
        raise ToolError(f"no customer with id {id}")
    return CUSTOMERS[id]


@server.tool(description="Deletes one customer by id.", annotations=DESTRUCTIVE)
def delete_customer(id: int) -> dict:
    if CUSTOMERS.pop(id, None) is None:
        raise ToolError(f"no customer with id {id}")
    return {"deleted": id}


@server.tool(description="The API token this server was started with.", annotations=READ_ONLY)
def whoami() -> str:
    return os.environ.get("CRM_TOKEN", "")


@server.tool(description="A report that takes `seconds` to compute.", annotations=READ_ONLY)
def slow_report(seconds: float) -> dict:
    time.sleep(seconds)
    return {"slept": seconds}


if __name__ == "__main__":
    server.run("stdio")
