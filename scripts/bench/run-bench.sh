#!/usr/bin/env bash
# run-bench.sh measures sluice run against its baselines, side by side in
# one run (see docs/benchmarks.md):
#   1. 100 sequential no-op host steps: sluice run, nektos/act on the host
#      (-P ubuntu-latest=-self-hosted) with a workflow of the same 100
#      steps, and a plain shell script running them;
#   2. 50 independent one-step stages against the same 50 in a chain.
# Each sluice run is against a warm `sluice dev` stack, as on a developer's
# machine; server start-up is measured on its own.
#
# sluice dev needs buildkitd: bin/buildkitd from `make tools` unless
# SLUICE_BUILDKITD_BIN names another.
#
# BIN names the directory of the sluice and sluice-temporal binaries
# (default bin/, from `make build`); BASE_BIN, when set, adds the sluice of
# another build (an older commit, for a before/after) to the first
# benchmark, against its own warm stack. BENCH=steps100 or BENCH=stages50
# runs only that benchmark; RUNS sets the runs of the first (default 10).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${BIN:-$root/bin}
base_bin=${BASE_BIN:-}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
export SLUICE_HOME=$work/home

"$root/scripts/deps.sh" git hyperfine
. "$root/scripts/bench/steps100.sh"
bench_act

repo=$work/repo
mkdir -p "$work/seq" "$work/par"
bench_steps100_repo "$repo"
{
  echo '#!/bin/sh -e'
  for i in $(seq 1 100); do echo "sh -c true"; done
} > "$work/steps100.sh"
chmod +x "$work/steps100.sh"
par=$work/par/.sluice; seq=$work/seq/.sluice
mkdir -p "$par" "$seq"
{
  echo 'pipeline "par50" {}'
  for i in $(seq 1 50); do echo "stage \"s$i\" {"; echo '  needs = []'; echo "  step \"run\" \"x$i\" { command = [\"sleep\", \"0.2\"] }"; echo '}'; done
} > "$par/p.hcl"
{
  echo 'pipeline "seq50" {}'
  for i in $(seq 1 50); do echo "stage \"s$i\" {"; echo "  step \"run\" \"x$i\" { command = [\"sleep\", \"0.2\"] }"; echo '}'; done
} > "$seq/p.hcl"
for d in "$repo" "$work/par" "$work/seq"; do
  git -C "$d" init -q -b main && git -C "$d" add . && git -C "$d" -c user.name=b -c user.email=b@example.com commit -qm bench
done

echo "== embedded server start (sluice dev until ready)"
start=$(date +%s.%N)
# wait_dev LOG PID: until sluice dev is ready, or its failure.
wait_dev() {
  until grep -q "Sluice dev:" "$1"; do
    if ! kill -0 "$2" 2>/dev/null; then echo "sluice dev failed:" >&2; cat "$1" >&2; exit 1; fi
    sleep 0.05
  done
}
export SLUICE_BUILDKITD_BIN=${SLUICE_BUILDKITD_BIN:-$root/bin/buildkitd}
"$bin/sluice" dev > "$work/dev.log" 2>&1 &
wait_dev "$work/dev.log" $!
echo "ready after $(echo "$(date +%s.%N) - $start" | bc) s"
base=()
if [ -n "$base_bin" ]; then
  SLUICE_HOME=$work/base-home "$base_bin/sluice" dev > "$work/base-dev.log" 2>&1 &
  wait_dev "$work/base-dev.log" $!
  printf '#!/bin/sh\nSLUICE_HOME=%s exec %s run --progress plain\n' "$work/base-home" "$base_bin/sluice" > "$work/base-run.sh"
  chmod +x "$work/base-run.sh"
  base=(-n "sluice run ($base_bin)" "$work/base-run.sh")
fi

bench=${BENCH:-all}
: > "$work/steps100.md"; : > "$work/stages50.md"
if [ "$bench" != stages50 ]; then
echo "== 100 sequential no-op host steps"
cd "$repo"
hyperfine --warmup 2 --runs "${RUNS:-10}" -N \
  -n "sluice run" "$bin/sluice run --progress plain" \
  "${base[@]}" \
  -n "act (host)" "act push -P ubuntu-latest=-self-hosted -W .github/workflows/w.yml" \
  -n "shell script" "$work/steps100.sh" \
  --export-markdown "$work/steps100.md"
fi
if [ "$bench" != steps100 ]; then
echo "== 50 independent stages against 50 in a chain (0.2 s each)"
hyperfine --warmup 1 --runs 5 -N \
  -n "50 parallel stages" "$bin/sluice run --progress plain $par" \
  -n "50 chained stages" "$bin/sluice run --progress plain $seq" \
  --export-markdown "$work/stages50.md"
fi
cat "$work/steps100.md" "$work/stages50.md"
