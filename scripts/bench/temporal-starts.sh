#!/usr/bin/env bash
# temporal-starts.sh measures the floor under issue 9's webhook benchmark:
# the embedded Temporal of a real `sluice server`, started as the server
# starts it, taking bare workflow starts open-loop at the same rate with
# nothing of Sluice's in their path (BenchmarkTemporalStarts). Run it next
# to scripts/bench/webhooks.sh to see how much of the "to started" figure
# is Temporal's own.
#
#   RATE      starts a second (default 200)
#   DURATION  seconds of load (default 60)
#   DB        sqlite (default) or postgres, as in webhooks.sh
#   WORKER    noop (default: each start is a workflow whose one task a
#             worker completes at once, with eager start, the least a run
#             costs) or none (the start alone)
#
# The figures are in docs/benchmarks.md, "The floor: Temporal alone".
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
go build -o bin/ ./cmd/sluice-temporal
export SLUICE_TEMPORAL_BIN="$root/bin/sluice-temporal"
export SLUICE_BENCH_RATE="${RATE:-200}"
export SLUICE_BENCH_SECONDS="${DURATION:-60}"
export SLUICE_BENCH_DB="${DB:-sqlite}"
export SLUICE_BENCH_WORKER="${WORKER:-noop}"
[ "$SLUICE_BENCH_DB" = sqlite ] || scripts/deps.sh postgres
exec go test ./server -run '^$' -bench '^BenchmarkTemporalStarts$' -benchtime 1x -count 1 -timeout 30m -v
