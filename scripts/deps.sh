#!/usr/bin/env bash
# deps.sh installs the Debian packages a make target needs when their
# commands are missing: `scripts/deps.sh git hyperfine`. Each argument is a
# command; the package that provides it is looked up below. Nothing is
# installed when every command is already there, so repeated runs are fast.
set -euo pipefail

declare -A package=(
  [git]=git
  [hyperfine]=hyperfine
  [runc]=runc
  [prometheus]=prometheus
  [busybox]=busybox-static
  [ip]=iproute2
  [postgres]=postgresql
)

# have says whether a command is there. Debian keeps PostgreSQL's server
# programs off PATH, in /usr/lib/postgresql/VERSION/bin: "postgres" stands
# for them (internal/testing/pgtest finds them there).
have() {
  case "$1" in
    postgres) compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1 ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

missing=()
for cmd in "$@"; do
  if ! have "$cmd"; then
    missing+=("${package[$cmd]:-$cmd}")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing Debian packages: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${missing[@]}" >/dev/null
