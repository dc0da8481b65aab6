#!/usr/bin/env bash
# The whole check: lint, types, import contracts, generated files, and every test suite
# (unit, integration against a real local control plane, end-to-end with real MCP software).
# Extra arguments go to pytest, e.g. `scripts/test.sh tests/unit -x`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"

echo "==> control plane binaries (built once from Go modules, then cached)" >&2
uv run moorage-dev build >/dev/null
echo "==> helm 4 and helm 3 for the charts (built once from Go modules, then cached)" >&2
uv run moorage-dev build --helm >/dev/null

# The real node (kubelet, containerd, runc, CNI), images built with buildah, cert-manager and
# Prometheus: Debian packages installed when missing, binaries built from Go modules and images
# built from docker/ once, then cached. A machine where this cannot be done (not root) skips the
# real-node tests with the reason; CI requires them.
if [ "$(id -u)" -eq 0 ]; then
  echo "==> real node: Debian packages, kubelet, kube-proxy, CoreDNS, cert-manager, Prometheus (cached)" >&2
  bash scripts/realnode-deps.sh
  bash scripts/images-deps.sh
  bash scripts/prometheus-deps.sh
  uv run moorage-dev build --real-node >/dev/null
  echo "==> images from docker/ with buildah (cached by content)" >&2
  uv run moorage-dev images build >/dev/null
else
  echo "==> not root: the real-node tests will be skipped (docs/real-node.md says what they need)" >&2
fi
if [ -n "${CI:-}" ]; then
  export MOORAGE_REQUIRE_REAL_NODE="${MOORAGE_REQUIRE_REAL_NODE:-1}"
  # redis-server and haproxy come with the real node's packages; CI must not skip the tests
  # that start them (tests/testkit/debianservers.py).
  export MOORAGE_REQUIRE_SERVERS="${MOORAGE_REQUIRE_SERVERS:-1}"
fi

if [ -x scripts/node.sh ]; then
  echo "==> Node.js 22 and the MCP conformance suite (cached)" >&2
  scripts/node.sh >/dev/null
fi

echo "==> ruff, mypy, import contracts, generated files" >&2
uv run ruff check .
uv run ruff format --check .
uv run mypy
uv run lint-imports
uv run python -m moorage_api.crdgen --check
uv run python -m moorage_api.chartgen --check
if uv run python -c "import moorage_api.docgen" 2>/dev/null; then
  uv run python -m moorage_api.docgen --check
fi

echo "==> pytest" >&2
exec uv run pytest -p no:cacheprovider "$@"
