#!/bin/sh
# Installs the Debian/Ubuntu packages moonseg builds against (uses sudo when not root).
set -e
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends build-essential cmake pkg-config \
  luajit libluajit-5.1-dev libopenblas-dev libdnnl-dev libpng-dev libuv1-dev \
  libturbojpeg0-dev libjpeg62-turbo-dev libreadline8 >/dev/null 2>&1 || \
$SUDO apt-get install -y --no-install-recommends build-essential cmake pkg-config \
  luajit libluajit-5.1-dev libopenblas-dev libdnnl-dev libpng-dev libuv1-dev \
  libturbojpeg0-dev libreadline8
echo "moonseg dependencies installed"
