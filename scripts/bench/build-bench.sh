#!/usr/bin/env bash
# build-bench.sh compares an image step of sluice run with buildctl build,
# side by side in one run (see docs/benchmarks.md, issue 4): the same
# Dockerfile (examples/go-service's, FROM the local base images), the same
# buildkitd, the same registry, each pushing its image; cold (buildctl
# prune --all before every run) and warm (everything cached).
#
# sluice run is measured against a `sluice dev` that is already up, as on
# a developer's machine: the Temporal server, buildkitd and the registry
# are running, and each sluice run connects to them, compiles the
# pipeline, starts the workflow, prepares the workspace (a git checkout),
# runs the step and prints the summary.
#
# BIN names the directory of sluice, sluice-temporal and buildctl
# (default bin/); COLD_RUNS and WARM_RUNS the number of runs (3 and 10;
# COLD_RUNS=0 leaves the cold runs out).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${BIN:-$root/bin}
cold_runs=${COLD_RUNS:-3}
warm_runs=${WARM_RUNS:-10}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait; rm -rf "$work"' EXIT
export SLUICE_HOME=$work/home

"$root/scripts/deps.sh" git hyperfine

# The project: the go-service example with a one-image-step pipeline.
repo=$work/repo
mkdir -p "$repo/.sluice"
cp "$root"/examples/go-service/{Dockerfile,go.mod,main.go,main_test.go} "$repo/"
cat > "$repo/.sluice/p.hcl" <<'HCL'
pipeline "build" {}

variable "registry" {
  default = "localhost:5000"
}

stage "build" {
  step "image" "api" {
    build_args = { REGISTRY = var.registry, VERSION = "bench" }
    tags       = ["${var.registry}/bench/sluice:1"]
    push       = true
  }
}
HCL
git -C "$repo" init -q
git -C "$repo" add .
git -C "$repo" -c user.name=bench -c user.email=bench@example.com commit -qm bench

"$bin/sluice" dev > "$work/dev.log" 2>&1 &
until grep -q "Sluice dev:" "$work/dev.log"; do
  sleep 0.1
  if ! kill -0 %1 2>/dev/null; then cat "$work/dev.log"; exit 1; fi
done
addr=$(sed -n 's/.*"address": *"\([^"]*\)".*/\1/p' "$SLUICE_HOME/buildkitd.json")
reg=$(sed -n 's/.*"address": *"\([^"]*\)".*/\1/p' "$SLUICE_HOME/registry.json")
echo "sluice dev up: buildkitd $addr, registry $reg"
"$bin/sluice" images > /dev/null

sluice_run="$bin/sluice run $repo/.sluice --progress plain --var registry=$reg"
buildctl_build="$bin/buildctl --addr $addr build --frontend dockerfile.v0 --local context=$repo --local dockerfile=$repo --opt build-arg:REGISTRY=$reg --opt build-arg:VERSION=bench --output type=image,name=$reg/bench/buildctl:1,push=true"
prune="$bin/buildctl --addr $addr prune --all"

# Both once, so that each command's output is checked before it is timed.
$sluice_run > "$work/sluice.log" 2>&1 || { cat "$work/sluice.log"; exit 1; }
grep -q "succeeded" "$work/sluice.log"
$buildctl_build > "$work/buildctl.log" 2>&1 || { cat "$work/buildctl.log"; exit 1; }

if [ "$cold_runs" -gt 0 ]; then
  echo "== cold: buildctl prune --all before each run"
  hyperfine --runs "$cold_runs" --prepare "$prune" \
    --export-json "$work/cold.json" \
    -n buildctl "$buildctl_build" -n "sluice run" "$sluice_run"
fi
echo "== warm: every layer cached"
hyperfine --warmup 1 --runs "$warm_runs" \
  --export-json "$work/warm.json" \
  -n buildctl "$buildctl_build" -n "sluice run" "$sluice_run"
# The build itself, side by side: the image step's duration as the run
# records it (the step's activity on the runner: BuildKit session, solve,
# export and push, its log) against buildctl build's wall time, alternated
# run by run.
echo "== warm, the image step against buildctl build, alternated ($warm_runs pairs)"
python3 - "$warm_runs" "$work/steps.json" "$buildctl_build" "$sluice_run" <<'PY'
import json, re, shlex, statistics, subprocess, sys, time
n, out, buildctl, sluice = int(sys.argv[1]), sys.argv[2], shlex.split(sys.argv[3]), shlex.split(sys.argv[4])
def ms(d):
    m = re.fullmatch(r"([0-9.]+)(µs|ms|s)", d)
    return float(m.group(1)) * {"µs": 0.001, "ms": 1, "s": 1000}[m.group(2)]
b, s, w = [], [], []
for _ in range(n):
    t = time.perf_counter()
    subprocess.run(buildctl, check=True, capture_output=True)
    b.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    r = subprocess.run(sluice, check=True, capture_output=True, text=True)
    w.append((time.perf_counter() - t) * 1000)
    m = re.search(r"^build\s+api\s+succeeded\s+(\S+)$", r.stdout, re.M)
    s.append(ms(m.group(1)))
json.dump({"buildctl_ms": b, "image_step_ms": s, "sluice_run_ms": w}, open(out, "w"))
mb, ms_, mw = statistics.median(b), statistics.median(s), statistics.median(w)
print(f"buildctl build {mb:.1f} ms ({min(b):.1f}-{max(b):.1f}), image step {ms_:.1f} ms ({min(s):.1f}-{max(s):.1f}), whole sluice run {mw:.1f} ms ({min(w):.1f}-{max(w):.1f})")
print(f"step: median image step / buildctl build = {ms_/mb:.2f}x")
PY
for f in cold warm; do
  [ -f "$work/$f.json" ] || continue
  python3 - "$work/$f.json" "$f" <<'PY'
import json, statistics, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
b, s = statistics.median(r["buildctl"]["times"]), statistics.median(r["sluice run"]["times"])
print(f"{sys.argv[2]}: median buildctl {b:.2f} s, sluice run {s:.2f} s, ratio {s/b:.2f}x")
PY
done
