#!/usr/bin/env bash
# The demo: a local control plane, the webhook and the operator against it, an example stdio
# MCPServer, its proxy runner with mcp-server-time, and a real MCP client calling a tool.
# Everything it starts is stopped at the end (or on Ctrl-C).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
echo "==> control plane binaries (built once from Go modules, then cached)" >&2
uv run moorage-dev build >/dev/null
exec uv run moorage-dev demo "$@"
