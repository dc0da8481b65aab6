#!/usr/bin/env bash
# Debian packages a real node needs (`moorage-dev cluster up --real-node`, docs/real-node.md):
# containerd, runc, the CNI plugins, iptables, socat, conntrack, iproute2, and gcc with a static
# libc for the pause image; and redis-server and haproxy, which the tests start (tests/integration/
# ratelimit, tests/e2e/ratelimit, tests/e2e/scaleout: three proxy replicas behind HAProxy). Installs
# only what is missing (apt-get update once, then install); quiet and quick when everything is
# there. Needs root to install.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

need=()
want() { # want <package> <test...>: add the package when the test fails
  local package="$1"
  shift
  "$@" >/dev/null 2>&1 || need+=("$package")
}
want containerd command -v containerd-shim-runc-v2
want containerd command -v ctr
want runc command -v runc
want containernetworking-plugins test -x /usr/lib/cni/bridge -a -x /usr/lib/cni/host-local -a -x /usr/lib/cni/loopback
want iptables command -v iptables-save
want iproute2 command -v ip
want socat command -v socat
want conntrack command -v conntrack
want gcc command -v gcc
want redis-server command -v redis-server
want haproxy command -v haproxy
want libc6-dev test -f "/usr/lib/$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)/libc.a"

[ ${#need[@]} -eq 0 ] && exit 0
# containerd's package owns two of the checks above; name each package once.
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)

if [ "$(id -u)" -ne 0 ]; then
  echo "realnode-deps.sh: run as root to install: ${need[*]}" >&2
  exit 1
fi
echo "realnode-deps.sh: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
