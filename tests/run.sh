#!/bin/sh
# Builds moonseg twice (release with warnings as errors, and AddressSanitizer +
# UndefinedBehaviorSanitizer) and runs every test in both; ends with ctest's summary.
set -e
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DMS_SANITIZE=ON -DMS_WERROR=ON -DMS_WITH_CUDA=OFF >/dev/null
cmake --build build-asan -j "$jobs"
echo "== sanitizer build: C and Lua tests =="
(cd build-asan && ctest -j "$jobs" --output-on-failure -L sanitize)
cmake -S . -B build -DMS_WERROR=ON >/dev/null
cmake --build build -j "$jobs"
echo "== release build: all tests =="
cd build && ctest -j "$jobs" --output-on-failure
