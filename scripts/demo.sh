#!/usr/bin/env bash
# The demo: a local control plane with a real node, Moorage installed on it from images built
# from docker/ (cert-manager issuing the webhook's certificate), the example stdio MCPServer in
# pods, and a real MCP client calling a tool through its Service. Where the machine cannot run a
# real node (or with --local) it says why and runs the operator, the webhook and the proxy runner
# on this machine against kwok's fake node instead. Everything it starts is stopped at the end
# (or on Ctrl-C).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
echo "==> control plane binaries (built once from Go modules, then cached)" >&2
uv run moorage-dev build >/dev/null
if [ "$(id -u)" -eq 0 ] && [[ " $* " != *" --local "* ]]; then
  echo "==> Debian packages for the real node and for building images (installed when missing)" >&2
  bash scripts/realnode-deps.sh && bash scripts/images-deps.sh ||
    echo "==> they could not be installed: the demo will say why and run locally" >&2
fi
exec uv run moorage-dev demo "$@"
