#!/bin/sh
# Builds the request decoder fuzz target with libFuzzer, ASan and UBSan, outside meson.
# Usage: tests/fuzz/build.sh [OUTPUT_DIR]   (default: build-fuzz/)
# Then:  OUTPUT_DIR/request_fuzz tests/fuzz/request_corpus/ -max_total_time=60
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-"$root/build-fuzz"}
mkdir -p "$out/proto"
python3 "$root/proto/gen/generate.py" "$out/proto" "$root"/proto/schema/*.api
clang++-14 -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$root" -I"$out" \
    "$root/tests/fuzz/request_fuzz.cc" "$root/proto/header.cc" "$root/proto/wire.cc" \
    "$out/proto/messages.cc" -o "$out/request_fuzz"
echo "built $out/request_fuzz"
