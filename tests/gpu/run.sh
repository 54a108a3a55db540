#!/bin/sh
# run.sh: the GPU machine's test run. First the op registry on cuda:0 against the CPU
# (tests/lua/test_backend_ops.lua: one row per case, "ok", the error or "not supported"),
# printed in full, then the other CUDA tests. Usage: tests/gpu/run.sh [builddir=build]
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build="$root/$build" ;; esac
cd "$build"
ctest -R '^gpu/backend_ops$' -V
ctest -L gpu -E '^gpu/backend_ops$' --output-on-failure
