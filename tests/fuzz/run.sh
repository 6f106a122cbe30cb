#!/usr/bin/env bash
# Builds every tests/fuzz/*_fuzz.cc as a libFuzzer binary (clang++-14 with ASan and
# UBSan, outside meson) and runs each for a bounded time. Exits non-zero when a
# target fails to build or a run finds a crash, a leak, a timeout or undefined
# behaviour. CI runs this script.
#
#   tests/fuzz/run.sh [SECONDS_PER_TARGET]     (default 60, or $FUZZ_SECONDS)
#   FUZZ_OUT=dir   where objects, binaries, corpora and crash artifacts go
#                  (default build-fuzz/)
#   JOBS=n         parallel compiles (default 2)
#
# Each target links against all of proto/ (plus the generated message codecs) and
# all of net/, storage/ and broker/ except main.cc (two archives: a target pulls only
# the objects it uses), so a new target needs no change here. No mimalloc: the
# sanitizers own malloc. Seeds live in tests/fuzz/<name>_corpus/ for a
# target <name>_fuzz.cc; they are only read: inputs libFuzzer finds go to
# $FUZZ_OUT/corpus/<name>/.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${1:-${FUZZ_SECONDS:-60}}
out=${FUZZ_OUT:-"$root/build-fuzz"}
jobs=${JOBS:-2}
cxx=${FUZZ_CXX:-clang++-14}
ar=${FUZZ_AR:-ar}

# The project's own flags (meson.build) where they change code generation.
common_flags=(-std=c++20 -O1 -g -msse4.2 -mpclmul -I"$root" -I"$out/gen"
  -fno-sanitize-recover=undefined)
object_flags=(-fsanitize=fuzzer-no-link,address,undefined)
link_flags=(-fsanitize=fuzzer,address,undefined)
libraries=(-lz -lsnappy -llz4 -lzstd -lpthread -lzookeeper_mt)
# liburing and toml++ (a compiled library in Debian, header-only elsewhere) as
# pkg-config describes them.
broker_cflags=($(pkg-config --cflags liburing tomlplusplus 2>/dev/null || true))
broker_libraries=($(pkg-config --libs liburing tomlplusplus 2>/dev/null || echo -luring))

mkdir -p "$out/gen/proto" "$out/obj" "$out/bin" "$out/artifacts"

# The generated codecs, as proto/meson.build produces them.
sources=("$root"/proto/*.cc)
if [ -f "$root/proto/gen/generate.py" ]; then
  python3 "$root/proto/gen/generate.py" "$out/gen/proto" "$root"/proto/schema/*.api
  sources+=("$out/gen/proto/messages.cc")
fi

# compile ARCHIVE SOURCES...: objects in $out/obj/ARCHIVE/, then $out/ARCHIVE.a.
compile() {
  local archive=$1
  shift
  echo "fuzz: compiling $# sources for $archive"
  rm -rf "${out:?}/obj/$archive"
  mkdir -p "$out/obj/$archive"
  # Object names keep the folder (broker/handlers/metadata.cc vs broker/metadata.cc).
  printf '%s\n' "$@" | xargs -P "$jobs" -I{} sh -c \
    'src="$1"; shift; name=$(echo "${src#'"$root"'/}" | tr / _); exec "$@" -c "$src" -o "'"$out/obj/$archive"'/${name%.cc}.o"' _ {} \
    "$cxx" "${common_flags[@]}" "${broker_cflags[@]}" "${object_flags[@]}"
  rm -f "$out/$archive.a"
  "$ar" rcs "$out/$archive.a" "$out/obj/$archive"/*.o
}
compile libproto_fuzz "${sources[@]}"
broker_sources=()
while IFS= read -r src; do broker_sources+=("$src"); done < <(
  find "$root/net" "$root/storage" "$root/broker" -name '*.cc' ! -path "$root/broker/main.cc" | sort)
compile libspate_fuzz "${broker_sources[@]}"

targets=()
for target_source in "$root"/tests/fuzz/*_fuzz.cc; do
  [ -e "$target_source" ] || continue
  name=$(basename "$target_source" .cc)
  echo "fuzz: building $name"
  "$cxx" "${common_flags[@]}" "${link_flags[@]}" "${broker_cflags[@]}" "$target_source" \
    "$out/libspate_fuzz.a" "$out/libproto_fuzz.a" "${libraries[@]}" "${broker_libraries[@]}" -o "$out/bin/$name"
  targets+=("$name")
done

failed=()
for name in "${targets[@]}"; do
  corpus="$out/corpus/$name"
  mkdir -p "$corpus"
  seeds=()
  seed_dir="$root/tests/fuzz/${name%_fuzz}_corpus"
  [ -d "$seed_dir" ] && seeds=("$seed_dir")
  echo "fuzz: running $name for ${seconds}s"
  if ! ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
      UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} \
      "$out/bin/$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$out/artifacts/$name-" \
      "$corpus" "${seeds[@]}"; then
    failed+=("$name")
  fi
done

if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (inputs in $out/artifacts/)" >&2
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran clean"
