#!/usr/bin/env bash
# An idle runner's memory and CPU (issue 11): sluice server with its
# Temporal on loopback and no runner, one sluice runner with two labels,
# left idle; RSS after it settles, and the CPU it uses over a minute.
# Usage: scripts/bench/runner-idle.sh [seconds]   (needs bin/sluice and bin/sluice-temporal: make build)
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-60}
tmp=$(mktemp -d)
trap 'kill $srv $run 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
export SLUICE_TEMPORAL_BIN=$PWD/bin/sluice-temporal
port=$((20000 + RANDOM % 20000))
SLUICE_HOME=$tmp/server bin/sluice server --listen 127.0.0.1:$((port + 1)) --temporal-listen 127.0.0.1:$port --no-runner --no-build >"$tmp/server.log" 2>&1 &
srv=$!
for _ in $(seq 1 120); do grep -q "Sluice server at" "$tmp/server.log" && break; sleep 0.5; done
# The runner runs its own copy of the binary, as on a host of its own:
# pages of one file mapped by two processes (the server here) are counted
# in both and stay resident for the other.
cp bin/sluice "$tmp/sluice-runner-host"
env SLUICE_HOME=$tmp/runner ${RUNNER_ENV:-} "$tmp/sluice-runner-host" runner --temporal-address 127.0.0.1:$port --labels linux,docker --work-dir "$tmp/work" >"$tmp/runner.log" 2>&1 &
run=$!
for _ in $(seq 1 60); do grep -q "Sluice runner" "$tmp/runner.log" && break; sleep 0.5; done
sleep 10
ticks() { awk '{print $14 + $15}' /proc/$run/stat; }
t0=$(ticks)
sleep "$secs"
t1=$(ticks)
hz=$(getconf CLK_TCK)
rss=$(awk '/VmRSS/ {print $2}' /proc/$run/status)
rssfile=$(awk '/RssFile/ {print $2}' /proc/$run/status); rssanon=$(awk '/RssAnon/ {print $2}' /proc/$run/status)
cpu=$(awk -v d=$((t1 - t0)) -v hz="$hz" -v s="$secs" 'BEGIN { printf "%.3f", 100 * d / hz / s }')
echo "idle runner: RSS $((rss / 1024)) MiB ($rss KiB: file-backed $((rssfile / 1024)) MiB, anonymous $((rssanon / 1024)) MiB); CPU ${cpu}% of one core over ${secs}s (goal < 40 MiB, ~0%)"
