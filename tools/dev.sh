#!/usr/bin/env bash
# Developer entry point: installs Debian 12's packages, builds, runs.
#   tools/dev.sh run [spate flags…]   build (release) and start a single-node broker
#   tools/dev.sh test                 build and run every test (unit + integration)
#   tools/dev.sh asan                 the same tests under AddressSanitizer + UBSan
#   tools/dev.sh bench                end-to-end benchmark ratios (iperf3, sockperf, fio baselines;
#                                     spatectl's perf tools against kcat)
#   tools/dev.sh cluster [N]          build, then ZooKeeper and N brokers (default 3) on
#                                     127.0.0.1:9092…; Ctrl-C stops them (tools/local_cluster.py)
#   tools/dev.sh deps                 only install the packages
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential meson ninja-build pkg-config cmake python3
  liburing-dev libmimalloc-dev libtomlplusplus-dev doctest-dev libbenchmark-dev
  zlib1g-dev libsnappy-dev liblz4-dev libzstd-dev
  kcat python3-confluent-kafka python3-kafka clang-14 libclang-rt-14-dev
  libzookeeper-mt-dev nlohmann-json3-dev zookeeper python3-kazoo prometheus)

install_deps() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
}

# kafkajs for the integration tests, from the npm registry (node and npm from Debian if
# the machine has none).
install_js_deps() {
  if ! command -v npm >/dev/null 2>&1; then
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm
  fi
  [ -d tests/integration/js/node_modules/kafkajs ] ||
    (cd tests/integration/js && npm install --no-audit --no-fund --silent)
}

# Apache Kafka's Java tools (../shared/kafka or $SPATE_KAFKA_DIR), when the machine has them:
# their Debian dependencies (a JRE among them). The tests that use them skip otherwise.
install_kafka_deps() {
  local k
  for k in "${SPATE_KAFKA_DIR:-}" ../shared/kafka /work/shared/kafka; do
    if [ -n "$k" ] && [ -x "$k/install-deps.sh" ]; then
      "$k/install-deps.sh" >/dev/null || echo "warning: $k/install-deps.sh failed" >&2
      return 0
    fi
  done
}

build() {  # build DIR [meson options…]
  local dir=$1; shift
  [ -f "$dir/build.ninja" ] || meson setup "$dir" "$@" >/dev/null
  ninja -C "$dir" -j"${JOBS:-2}"
}

case "${1:-}" in
  deps) install_deps ;;
  run)
    shift
    [ "${1:-}" = "--" ] && shift
    install_deps
    build build
    exec ./build/broker/spate "$@"
    ;;
  cluster)
    shift
    install_deps
    build build
    exec /usr/bin/python3 tools/local_cluster.py "$@"
    ;;
  test)
    install_deps
    install_js_deps
    install_kafka_deps
    build build
    meson test -C build --print-errorlogs --num-processes 1
    ;;
  asan)
    install_deps
    install_js_deps
    install_kafka_deps
    build build-asan -Db_sanitize=address,undefined -Dbuildtype=debugoptimized -Db_lundef=false -Dbenchmarks=disabled
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
      meson test -C build-asan --print-errorlogs --num-processes 1 --timeout-multiplier 3
    ;;
  bench)
    install_deps
    missing=()
    for p in iperf3 sockperf fio; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    if [ ${#missing[@]} -gt 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
    build build
    /usr/bin/python3 bench/e2e.py --build build
    bench/idle_partitions.sh build 4000
    bench/spatectl_vs_kcat.sh build
    ;;
  *)
    echo "usage: tools/dev.sh run|test|asan|bench|cluster|deps" >&2
    exit 2
    ;;
esac
