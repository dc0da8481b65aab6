#!/usr/bin/env bash
# What `moorage-dev images build` needs to build images with no Docker daemon: buildah (builds the
# Dockerfiles), debootstrap (makes the local Debian base) and python3 with pip (downloads the uv
# wheel). Installs the Debian packages that are missing; idempotent and silent when all is there.
# Building runs as root (buildah's chroot isolation, debootstrap), so this script does too.
set -euo pipefail

packages=()
command -v buildah >/dev/null 2>&1 || packages+=(buildah)
command -v debootstrap >/dev/null 2>&1 || packages+=(debootstrap)
python3 -m pip --version >/dev/null 2>&1 || packages+=(python3-pip)
if [ ${#packages[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "images-deps.sh: missing ${packages[*]}; installing them (and building images) needs root" >&2
  exit 3
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "images-deps.sh: missing ${packages[*]} and there is no apt-get to install them" >&2
  exit 3
fi
echo "images-deps.sh: installing ${packages[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${packages[@]}" >&2
for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null 2>&1 || { echo "images-deps.sh: $tool is still missing" >&2; exit 3; }
done
