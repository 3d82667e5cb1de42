#!/usr/bin/env bash
# runner-pickup.sh measures issue 11's speed goals across hosts: the
# server (sluice server --no-runner --no-build --temporal-listen A:7233) on
# host A and standalone runners (sluice runner) on other hosts, each host a
# network namespace (internal/testing/netns; needs root and `ip`).
#
#   pickup:  200 chained one-step stages on one idle runner (host B):
#            p50/p99/max from a stage being ready to its step's first
#            command, and the legs of that time from the run's history.
#   fan-out: one stage with a 256-instance matrix of a no-op step over 4
#            runners (B..E, --max-stages 64): the run's start to the first
#            instance's first command, and to the run's end.
#
# Both are Go tests in cmd/sluice/runners_bench_test.go that run only with
# SLUICE_BENCH=1; this script sets it and prints their "BENCH" lines.
#
#   BIN          directory with sluice and sluice-temporal, e.g. bin after
#                make build (also read as SLUICE_BENCH_BIN; default: the
#                test builds them from the tree into a temporary directory)
#   ROUNDS       how many times to run both (default 1)
#   ONLY         Pickup or Fanout: run only that one
#   TRACE_GIT=1  also time the runners' git processes (GIT_TRACE2_EVENT in
#                the runners' environment), to split the workspace time;
#                the tracing itself costs a little, so the headline figures
#                come from runs without it
#   PIN=1        the server and its Temporal on CPU 0, the runners (and
#                the gits and steps they start) on CPU 1 (taskset), so that
#                the runners' work and the server's do not take each
#                other's core, as on machines of their own
#   COLD=1       measure the first run of its labels on the new server
#                (by default a one-stage run of the same labels goes first,
#                so that the runners already poll that label set's queue:
#                they learn a new set within 2 s)
#   SLUICE_BENCH_STAGES, SLUICE_BENCH_INSTANCES, SLUICE_BENCH_RUNNERS,
#   SLUICE_BENCH_MAX_STAGES  change the sizes (defaults 200, 256, 4, 64)
#
# The figures are in docs/benchmarks.md, "Runner pickup and fan-out
# (issue 11)".
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
if [ "$(id -u)" -ne 0 ]; then
  echo "runner-pickup.sh: needs root (the hosts are network namespaces); skipped" >&2
  exit 0
fi
scripts/deps.sh ip git
export SLUICE_BENCH=1
# The binaries: BIN, or SLUICE_BENCH_BIN (relative to the repository), made
# absolute since the test runs in cmd/sluice.
bin=${BIN:-${SLUICE_BENCH_BIN:-}}
if [ -n "$bin" ]; then
  export SLUICE_BENCH_BIN
  SLUICE_BENCH_BIN=$(cd "$bin" && pwd)
fi
[ "${TRACE_GIT:-}" = 1 ] && export SLUICE_BENCH_GIT_TRACE=1
[ "${PIN:-}" = 1 ] && export SLUICE_BENCH_PIN=1
[ "${COLD:-}" = 1 ] && export SLUICE_BENCH_COLD=1
run='^TestBenchRunner(Pickup|Fanout)$'
[ -n "${ONLY:-}" ] && run="^TestBenchRunner${ONLY}\$"
. "$root/scripts/bench/rounds.sh"
bench_rounds runner-pickup "$run" 30m '^--- FAIL|failed in|stage .* failed:'
