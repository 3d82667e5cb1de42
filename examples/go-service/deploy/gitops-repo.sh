#!/bin/sh
# gitops-repo.sh [REPO]: says which GitOps repository the deploy stage
# commits to, as the step output "repo".
#
# A REPO given (var.gitops_repo) is used as it is. Without one, the deploy
# goes to a local bare repository, $TMPDIR/sluice-gitops/go-service-deploy.git
# (TMPDIR defaults to /tmp), made from deploy/apps the first time, so that
# `sluice run --event tag` makes its GitOps commit for real on a machine
# with nothing configured; `git -C <repo> log -p` shows the deploys.
#
# A dry run (SLUICE_DRY_RUN=true) changes nothing outside its workspace:
# when the local repository does not exist yet, it gets a scratch one in
# the workspace, for the argocd step to show the commit it would make.
set -eu

if [ -n "${1:-}" ]; then
	echo "repo=$1" >>"$SLUICE_OUTPUT"
	exit 0
fi

repo=${TMPDIR:-/tmp}/sluice-gitops/go-service-deploy.git
if [ ! -d "$repo" ] && [ "${SLUICE_DRY_RUN:-}" = true ]; then
	repo=$PWD/.gitops-dry-run.git
	echo "dry run: would make the GitOps repository ${TMPDIR:-/tmp}/sluice-gitops/go-service-deploy.git from deploy/apps; using a scratch copy in the workspace"
fi
if [ ! -d "$repo" ]; then
	seed=$(mktemp -d)
	cp -R deploy/apps "$seed/apps"
	git -C "$seed" init -q -b main
	git -C "$seed" add apps
	git -C "$seed" -c user.name=Sluice -c user.email=sluice@localhost commit -qm "go-service: the deploy manifests"
	mkdir -p "$(dirname "$repo")"
	git clone -q --bare "$seed" "$repo"
	rm -rf "$seed"
	echo "sluice: made the GitOps repository $repo from deploy/apps"
fi
echo "repo=$repo" >>"$SLUICE_OUTPUT"
