#!/usr/bin/env bash
# local-server-bench.sh measures issue 9's target (see docs/benchmarks.md,
# "The local stack is the server"): sluice run of 100 sequential no-op host
# steps, the whole command, with no `sluice dev`, against nektos/act on
# the host (-P ubuntu-latest=-self-hosted) with a workflow of the same 100
# steps, side by side in one run:
#   1. cold: the first sluice run on a fresh $SLUICE_HOME, which starts the
#      local server in the background (each measured run gets a fresh home;
#      the server of the one before is stopped first);
#   2. steady state: later sluice runs, which find that server.
# BIN names the directory of the sluice and sluice-temporal binaries
# (default bin/, from `make build`); BASE_BIN, when set, adds the sluice of
# another build to both, on a home of its own: the commit before the
# server (16f5cd7, where each sluice run started its own Temporal), or any
# later one (its background server is stopped before each cold run, as
# this build's is). RUNS sets the steady-state runs (default 10),
# COLD_RUNS the cold ones (default 5).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${BIN:-$root/bin}
base_bin=${BASE_BIN:-}
work=$(mktemp -d)
export SLUICE_HOME=$work/home
trap '"$bin/sluice" server stop >/dev/null 2>&1 || true; [ -z "$base_bin" ] || SLUICE_HOME=$work/base-home "$base_bin/sluice" server stop >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

"$root/scripts/deps.sh" git hyperfine
. "$root/scripts/bench/steps100.sh"
bench_act

repo=$work/repo
bench_steps100_repo "$repo"
git -C "$repo" init -q -b main && git -C "$repo" add . && git -C "$repo" -c user.name=b -c user.email=b@example.com commit -qm bench
cd "$repo"

# fresh.sh stops the server of the home and removes the home.
printf '#!/bin/sh\n"%s/sluice" server stop >/dev/null 2>&1\nrm -rf "%s"\n' "$bin" "$SLUICE_HOME" > "$work/fresh.sh"
cold_base=() steady_base=()
if [ -n "$base_bin" ]; then
  printf '#!/bin/sh\nSLUICE_HOME=%s "%s/sluice" server stop >/dev/null 2>&1\nrm -rf "%s"\n' "$work/base-home" "$base_bin" "$work/base-home" > "$work/base-fresh.sh"
  printf '#!/bin/sh\nSLUICE_HOME=%s exec %s run --progress plain\n' "$work/base-home" "$base_bin/sluice" > "$work/base-run.sh"
  chmod +x "$work/base-fresh.sh" "$work/base-run.sh"
  cold_base=(--prepare "$work/base-fresh.sh" -n "sluice run of $base_bin, fresh home" "$work/base-run.sh")
  steady_base=(-n "sluice run of $base_bin" "$work/base-run.sh")
fi
chmod +x "$work/fresh.sh"

echo "== cold: the first sluice run on a fresh home, which starts the server"
hyperfine --runs "${COLD_RUNS:-5}" -N \
  --prepare "$work/fresh.sh" -n "sluice run, fresh home (starts the server)" "$bin/sluice run --progress plain" \
  "${cold_base[@]}" \
  --prepare true -n "act (host)" "act push -P ubuntu-latest=-self-hosted -W .github/workflows/w.yml" \
  --export-markdown "$work/cold.md"

echo "== steady state: the server is up"
"$bin/sluice" runs >/dev/null
hyperfine --warmup 2 --runs "${RUNS:-10}" -N \
  -n "sluice run (server up)" "$bin/sluice run --progress plain" \
  "${steady_base[@]}" \
  -n "act (host)" "act push -P ubuntu-latest=-self-hosted -W .github/workflows/w.yml" \
  --export-markdown "$work/steady.md"
cat "$work/cold.md" "$work/steady.md"
