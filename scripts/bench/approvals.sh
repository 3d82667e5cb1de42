#!/usr/bin/env bash
# approvals.sh starts sluice dev on a fresh home and measures the memory of
# the runner and the server with 1,000 runs waiting on approval.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
export SLUICE_HOME=$(mktemp -d)
trap 'kill $dev 2>/dev/null || true; wait 2>/dev/null; rm -rf "$SLUICE_HOME"' EXIT
"$root/bin/sluice" dev > "$SLUICE_HOME/dev.log" 2>&1 &
dev=$!
until grep -q "Sluice dev:" "$SLUICE_HOME/dev.log"; do sleep 0.1; done
cd "$root" && go run ./scripts/bench/approvals -n "${N:-1000}" -dev-pid "$dev"
