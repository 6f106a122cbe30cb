# Shared by the bench/*.sh scripts (sourced, not run): a scratch directory, the processes
# started there (stopped and removed on exit), free ports, and waiting for a listener.
#   bench_init NAME BUILD_DIR TOOL…   sets $spate and $spatectl (from BUILD_DIR, which must
#                     hold them), checks that every TOOL is installed, sets $work and
#                     $bench_name and installs the exit trap
#   pids+=($!)        registers a background process to stop on exit
bench_init() {
  bench_name=$1
  spate=$2/broker/spate
  spatectl=$2/tools/spatectl
  shift 2
  for binary in "$spate" "$spatectl"; do
    [ -x "$binary" ] || { echo "$bench_name: $binary is missing; build it first" >&2; exit 1; }
  done
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$bench_name: $tool is not installed" >&2; exit 1; }
  done
  work=$(mktemp -d "/tmp/spate-$bench_name.XXXXXX")
  pids=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {  # wait_port PORT: up to 10 s for something to listen
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$bench_name: nothing listens on port $1" >&2
  return 1
}

ratio() { python3 -c "a,b=float('$1'),float('$2'); print('%.3f' % (a/b) if b > 0 else 'n/a')"; }
