#!/usr/bin/env bash
# Prometheus and promtool from Debian's `prometheus` package, installed when missing. Idempotent:
# a machine that has both runs no apt command at all. Moorage runs /usr/bin/prometheus itself (the
# Debian service is not used); the tests that need it call this script.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "prometheus-deps.sh: prometheus/promtool are missing and there is no apt-get to install them" >&2
  exit 3
fi
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1 || ! sudo -n true 2>/dev/null; then
    echo "prometheus-deps.sh: installing the prometheus package needs root (or password-less sudo)" >&2
    exit 3
  fi
  as_root=(sudo -n)
fi
echo "prometheus-deps.sh: installing Debian's prometheus package" >&2
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq >&2
# Recommends would add node-exporter and friends, which Moorage does not use.
"${as_root[@]}" apt-get install -y -qq --no-install-recommends prometheus >&2
command -v prometheus >/dev/null && command -v promtool >/dev/null
