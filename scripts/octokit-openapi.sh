#!/usr/bin/env bash
# octokit-openapi.sh prints the path of GitHub's REST API description, the
# file package/generated/api.github.com.json of the npm package
# @octokit/openapi at the pinned version (OpenAPI 3.0.3, about 13 MB). The
# fake GitHub in server/githubapp/githubfake validates its traffic against
# it. The file is fetched with `npm pack` into a cache directory, only when
# it is not there yet, so repeated runs print the path at once.
set -euo pipefail

version=23.0.2
member=package/generated/api.github.com.json
dir="${XDG_CACHE_HOME:-$HOME/.cache}/sluice/octokit-openapi-$version"
file="$dir/$member"

if [ ! -s "$file" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "octokit-openapi.sh: npm is missing (install Debian's npm package)" >&2
    exit 1
  fi
  mkdir -p "$dir"
  tmp=$(mktemp -d "$dir/.pack.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "@octokit/openapi@$version" >/dev/null)
  tar -xzf "$tmp/octokit-openapi-$version.tgz" -C "$tmp" "$member"
  mkdir -p "$(dirname "$file")"
  mv "$tmp/$member" "$file" # atomic: a concurrent reader sees all or nothing
fi
echo "$file"
