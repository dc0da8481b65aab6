#!/usr/bin/env bash
# The whole check: lint, types, import contracts, generated files, and every test suite
# (unit, integration against a real local control plane, end-to-end with real MCP software).
# Extra arguments go to pytest, e.g. `scripts/test.sh tests/unit -x`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"

echo "==> control plane binaries (built once from Go modules, then cached)" >&2
uv run moorage-dev build >/dev/null

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
if uv run python -c "import moorage_api.docgen" 2>/dev/null; then
  uv run python -m moorage_api.docgen --check
fi

echo "==> pytest" >&2
exec uv run pytest -p no:cacheprovider "$@"
