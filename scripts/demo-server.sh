#!/usr/bin/env bash
# demo-server.sh: `sluice server` with git push hooks, as a team would run
# it on one machine. It starts the server (state in $SLUICE_HOME), makes a
# bare repository for examples/hello and one for examples/go-service,
# installs sluice's post-receive hook in each, pushes each example's main
# branch, follows the runs the pushes started, and lists them through the
# API. The server is stopped at the end.
set -euo pipefail
BIN=${BIN:-bin/sluice}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-demo-server.XXXXXX")
export SLUICE_HOME=${SLUICE_HOME:-$HOME/.sluice}
listen=${LISTEN:-127.0.0.1:8080}
url=http://$listen

"$BIN" server stop >/dev/null 2>&1 || true
"$BIN" server --listen "$listen" >"$work/server.log" 2>&1 &
server=$!
trap '"$BIN" server stop >/dev/null 2>&1 || kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  grep -q "Sluice server at" "$work/server.log" 2>/dev/null && break
  kill -0 $server 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 0.2
done
cat "$work/server.log"
token=$("$BIN" server token create --user demo 2>/dev/null)

shas=()
for example in hello go-service; do
  bare=$work/$example.git
  git init -q --bare "$bare"
  "$BIN" hook install "$bare" --server "$url"
  src=$work/$example
  cp -r "examples/$example" "$src"
  git -C "$src" init -q -b main
  git -C "$src" add -A
  git -C "$src" -c user.name=demo -c user.email=demo@example.com commit -qm "$example"
  shas+=("$(git -C "$src" rev-parse HEAD)")
  echo "\$ git push $bare main"
  git -C "$src" push "$bare" main 2>&1 | sed 's/^/  /'
done

echo
echo "Waiting for the runs the pushes started (go-service builds its image with BuildKit)..."
# The runs of the pushed commits only: $SLUICE_HOME may hold earlier runs.
demo_runs() {
  local sha
  for sha in "${shas[@]}"; do
    curl -fsS -H "Authorization: Bearer $token" "$url/api/v1/runs?sha=$sha"
  done
}
deadline=$((SECONDS + 900))
while :; do
  runs=$(demo_runs)
  total=$(grep -c '"run_id"' <<<"$runs" || true)
  busy=$(grep -cE '"status": "(pending|queued|running)"' <<<"$runs" || true)
  [ "$total" -ge 2 ] && [ "$busy" -eq 0 ] && break
  [ $SECONDS -lt $deadline ] || { echo "runs did not finish within 15 minutes"; break; }
  sleep 2
done
echo
export SLUICE_TOKEN=$token
echo "\$ sluice runs --server $url"
"$BIN" runs --server "$url" --limit 10
for id in $(grep -o '"run_id": "[^"]*"' <<<"$runs" | cut -d'"' -f4); do
  echo
  echo "\$ sluice status --server $url $id"
  "$BIN" status --server "$url" "$id" || true  # exits 1 for a failed run; the demo fails below
done
! grep -qE '"status": "failed"' <<<"$runs"
