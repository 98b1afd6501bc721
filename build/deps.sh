#!/usr/bin/env bash
# What serket needs from Debian, installed when missing: the Fashion-MNIST
# files and espeak-ng the modalities read, OpenBLAS for the fast build,
# pkg-config to find it, and numpy and msgpack for the Python SDK and its
# example modules (docs/foreign.md). `make demo`, `make test` and CI run this first, so
# the README's two commands are all a fresh machine needs. With the
# argument "test" (make test) it also installs Chromium, which only the
# live view's browser tests drive (docs/web.md). As root it runs apt-get;
# otherwise it stops with the one command to run.
set -euo pipefail

need=(dataset-fashion-mnist espeak-ng libopenblas-dev pkg-config python3-numpy python3-msgpack)
[ "${1:-}" = test ] && need+=(chromium)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "serket needs Debian packages that are not installed: ${missing[*]}" >&2
  echo "run:  sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
