#!/usr/bin/env bash
# Prometheus and promtool from Debian's `prometheus` package, installed when missing. Idempotent:
# a machine that has both runs no apt command at all. Moorage runs /usr/bin/prometheus itself (the
# Debian service is not used); the tests that need it call this script.
#
# The package enables and starts prometheus.service, which would listen on 0.0.0.0:9090. It is
# installed with a policy-rc.d that forbids starting services (removed again on exit) and the
# unit is then disabled and stopped where systemd runs. A service left enabled by an earlier
# install is disabled as well.
set -euo pipefail

as_root=()
can_be_root() {
  if [ "$(id -u)" -eq 0 ]; then
    return 0
  fi
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
    return 0
  fi
  return 1
}

service_wanted() {
  command -v systemctl >/dev/null 2>&1 || return 1
  systemctl is-enabled --quiet prometheus 2>/dev/null || systemctl is-active --quiet prometheus 2>/dev/null
}

disable_service() {
  if command -v systemctl >/dev/null 2>&1; then
    "${as_root[@]}" systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
}

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  if service_wanted && can_be_root; then
    echo "prometheus-deps.sh: disabling prometheus.service (Moorage runs its own prometheus)" >&2
    disable_service
  fi
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "prometheus-deps.sh: prometheus/promtool are missing and there is no apt-get to install them" >&2
  exit 3
fi
if ! can_be_root; then
  echo "prometheus-deps.sh: installing the prometheus package needs root (or password-less sudo)" >&2
  exit 3
fi
echo "prometheus-deps.sh: installing Debian's prometheus package" >&2
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq >&2
# invoke-rc.d and deb-systemd-invoke start no service while policy-rc.d exits 101. One the
# machine already has is left as it is.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  trap '"${as_root[@]}" rm -f "$policy"' EXIT
  printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
  "${as_root[@]}" chmod 755 "$policy"
fi
# Recommends would add node-exporter and friends, which Moorage does not use.
"${as_root[@]}" apt-get install -y -qq --no-install-recommends prometheus >&2
# policy-rc.d keeps the service from starting, not from being enabled (started at next boot).
disable_service
command -v prometheus >/dev/null && command -v promtool >/dev/null
