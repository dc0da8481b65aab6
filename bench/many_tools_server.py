"""An `mcp` SDK server with `--tools N` tools generated at start (`tool_0` … `tool_<N-1>`, each
echoing its text), on streamable HTTP at `/mcp`: the aggregator bench's backend.

Usage: `python bench/many_tools_server.py --port 9000 --tools 50`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPDeprecationWarning

warnings.simplefilter("ignore", MCPDeprecationWarning)


def build_server(count: int) -> MCPServer:
    server = MCPServer("moorage-bench-many-tools", version="1.0.0")
    for index in range(count):

        def tool(text: str) -> str:
            return text

        server.add_tool(tool, name=f"tool_{index}", description=f"Echo number {index}.")
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tools", type=int, default=50)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    build_server(args.tools).run("streamable-http", host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
