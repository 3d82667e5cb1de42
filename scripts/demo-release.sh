#!/bin/sh
# demo-release.sh: the release of examples/go-service as a tag v0.1.0
# starts it, on a machine with nothing configured. The run builds and
# tests for real, reports the scan and the GitHub release as dry runs,
# waits at the deploy's approval, which this script gives from a second
# process as a release manager would (`sluice approve RUN deploy`), then
# commits the image to a local bare GitOps repository and reports the
# Argo CD sync. The repository's log shows the deploy at the end.
set -eu
bin=${BIN:-bin/sluice}
home=${SLUICE_HOME:-$HOME/.sluice}
run=go-service-v0.1.0-$(date +%s)

"$bin" run examples/go-service/.sluice --event tag --ref v0.1.0 --run-id "$run" --progress plain &
pid=$!
# The approval, once the deploy stage waits for it (build and tests first).
approved=
for _ in $(seq 1200); do
	if ! kill -0 "$pid" 2>/dev/null; then
		break
	fi
	if [ -f "$home/server.json" ] && "$bin" approve "$run" deploy --by "${USER:-demo}" --reason "make demo-release" >/dev/null 2>&1; then
		approved=yes
		echo "demo-release: approved stage deploy of run $run"
		break
	fi
	sleep 0.5
done
status=0
wait "$pid" || status=$?
if [ -z "$approved" ]; then
	echo "demo-release: the deploy stage of run $run was not approved" >&2
fi
repo=${TMPDIR:-/tmp}/sluice-gitops/go-service-deploy.git
if [ -d "$repo" ]; then
	echo
	echo "The GitOps repository $repo:"
	git -C "$repo" log --format='  %h %s' main
fi
exit "$status"
