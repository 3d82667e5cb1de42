#!/usr/bin/env bash
# load.sh measures issue 13's load on each store of the embedded Temporal:
# 100 runs of a 10-stage chain of host steps, started at once through the
# API (POST /api/v1/runs), on 4 standalone runners (sluice runner, hosts
# B..E, --max-stages 25) of a sluice server --no-runner on host A, first
# with Temporal on SQLite, then on PostgreSQL (Debian's, on a host of its
# own, --db ... --migrate), in the same run of the script. Hosts are
# network namespaces (internal/testing/netns; needs root and `ip`).
#
# Reported per store: whether every run succeeded, runs per minute (the
# first run's start to the last run's end), the p50/p99/max from a run's
# start to its first step's first command, the same for every later stage
# from being ready, the API's answer times, and the CPU of each process.
#
# It is a Go test in cmd/sluice/load_bench_test.go that runs only with
# SLUICE_BENCH=1; this script sets it and prints its "BENCH" lines.
#
#   BIN       directory with sluice and sluice-temporal (default: the test
#             builds them from the tree into a temporary directory)
#   STORES    "sqlite postgres" (default), or one of them
#   RUNS, STAGES, RUNNERS, MAX_STAGES  change the sizes (100, 10, 4, 25)
#   SHARDS    PostgreSQL's --history-shards (default 4)
#   PG_SETTINGS  more postgresql.conf lines, separated by ";" (e.g.
#             "synchronous_commit = off", which commits as SQLite's WAL
#             with synchronous=NORMAL does: safe from a crash of the
#             processes, not of the machine)
#   PG_PARAMS more parameters of the --db URL (e.g. "driver=pgx")
#   ROUNDS    how many times to run it all (default 1)
#
# The figures are in docs/benchmarks.md, "Temporal on PostgreSQL (issue 13)".
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
if [ "$(id -u)" -ne 0 ]; then
  echo "load.sh: needs root (the hosts are network namespaces; PostgreSQL runs as postgres); skipped" >&2
  exit 0
fi
scripts/deps.sh ip git postgres
export SLUICE_BENCH=1
bin=${BIN:-${SLUICE_BENCH_BIN:-}}
if [ -n "$bin" ]; then
  export SLUICE_BENCH_BIN
  SLUICE_BENCH_BIN=$(cd "$bin" && pwd)
fi
export SLUICE_BENCH_STORES="${STORES:-sqlite postgres}"
[ -n "${RUNS:-}" ] && export SLUICE_BENCH_LOAD_RUNS="$RUNS"
[ -n "${STAGES:-}" ] && export SLUICE_BENCH_LOAD_STAGES="$STAGES"
[ -n "${RUNNERS:-}" ] && export SLUICE_BENCH_RUNNERS="$RUNNERS"
[ -n "${MAX_STAGES:-}" ] && export SLUICE_BENCH_MAX_STAGES="$MAX_STAGES"
[ -n "${SHARDS:-}" ] && export SLUICE_BENCH_SHARDS="$SHARDS"
[ -n "${PG_SETTINGS:-}" ] && export SLUICE_BENCH_PG_SETTINGS="$PG_SETTINGS"
[ -n "${PG_PARAMS:-}" ] && export SLUICE_BENCH_PG_PARAMS="$PG_PARAMS"
. "$root/scripts/bench/rounds.sh"
bench_rounds load '^TestBenchLoad$' 60m '^\s*--- FAIL|did not'
