#!/usr/bin/env bash
# webhooks.sh measures issue 9's webhook ingestion: signed GitHub push
# deliveries sent open-loop to a real `sluice server` (embedded Temporal on
# SQLite, no runner), reporting p50/p99 to the 202 and to the run's
# workflow started, and the lost and duplicate runs. It builds bin/ first
# (the benchmark starts bin/sluice-temporal).
#
#   RATE      deliveries a second (default 200)
#   DURATION  seconds of load (default 60)
#   DRAIN     how long to wait for the last runs afterwards (default 3m)
#   DB        sqlite (default) or postgres: the embedded Temporal's store;
#             postgres starts Debian's PostgreSQL for the benchmark
#             (internal/testing/pgtest, root runs it as the postgres user)
#   INBOX     on (default with the embedded Temporal: answered from the
#             server's inbox) or off (answered once Temporal has the
#             delivery's workflow)
#
# The figures are in docs/benchmarks.md, "Issue 9: webhook deliveries".
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
go build -o bin/ ./cmd/sluice ./cmd/sluice-temporal
export SLUICE_TEMPORAL_BIN="$root/bin/sluice-temporal"
export SLUICE_BENCH_RATE="${RATE:-200}"
export SLUICE_BENCH_SECONDS="${DURATION:-60}"
export SLUICE_BENCH_DRAIN="${DRAIN:-3m}"
export SLUICE_BENCH_DB="${DB:-sqlite}"
export SLUICE_BENCH_INBOX="${INBOX:-}"
[ "$SLUICE_BENCH_DB" = sqlite ] || scripts/deps.sh postgres
exec go test ./server -run '^$' -bench '^BenchmarkWebhookLoad$' -benchtime 1x -count 1 -timeout 30m -v
