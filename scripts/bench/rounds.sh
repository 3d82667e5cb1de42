# rounds.sh is sourced by the benchmark scripts that run Go benchmark
# tests of cmd/sluice (gated by SLUICE_BENCH=1) for ROUNDS rounds:
#
#   bench_rounds NAME RUN TIMEOUT FAILURE_LINES
#
# runs `go test ./cmd/sluice -run RUN` ROUNDS times (default 1), printing
# each round's "BENCH" lines; a failed round's whole output is kept in a
# temporary file named after NAME, and the lines matching FAILURE_LINES
# (an extended regular expression) are shown. It exits 1 when a round
# failed.
bench_rounds() {
  local name=$1 run=$2 timeout=$3 failure=$4
  local keep failed=0
  # Not local: the EXIT trap removes them after the function returned.
  bench_out=$(mktemp)
  bench_log=$(mktemp)
  trap 'rm -f "$bench_out" "$bench_log"' EXIT
  local out=$bench_out log=$bench_log
  export SLUICE_BENCH_OUT="$out"
  for round in $(seq 1 "${ROUNDS:-1}"); do
    echo "round $round"
    : >"$out"
    if ! go test ./cmd/sluice -run "$run" -count 1 -timeout "$timeout" -v >"$log" 2>&1; then
      failed=$((failed + 1))
      keep=$(mktemp "${TMPDIR:-/tmp}/$name-failed-XXXXXX.log")
      cp "$log" "$keep"
      grep -E -- "$failure" "$log" | head -n 5 >&2 || true
      echo "round $round FAILED; its whole output is in $keep" >&2
    fi
    if grep -q -- '--- SKIP' "$log"; then
      grep -A2 -- '--- SKIP' "$log" >&2
    fi
    sed 's/^BENCH //' "$out"
  done
  [ "$failed" -eq 0 ] || { echo "$name.sh: $failed of ${ROUNDS:-1} round(s) failed" >&2; exit 1; }
}
