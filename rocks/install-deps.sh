#!/bin/sh
# Installs the Debian/Ubuntu packages moonseg builds against (sudo when not root).
# --test adds what the test suite needs beyond the build: clang and libFuzzer's runtime, and
# Python's venv (tests/run.sh installs TensorBoard's reader into a private environment).
set -e
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
pkgs="build-essential cmake pkg-config luajit libluajit-5.1-dev libopenblas-dev libdnnl-dev \
libpng-dev libdeflate-dev libuv1-dev libturbojpeg0-dev libyaml-dev libreadline8"
[ "${1:-}" = "--test" ] && pkgs="$pkgs clang libclang-rt-dev python3 python3-venv python3-pip"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
echo "moonseg dependencies installed"
