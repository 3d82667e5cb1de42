# steps100.sh is sourced by the benchmarks that compare sluice run with
# act: it installs act when missing and writes, into the git repository
# $1, the same 100 sequential no-op host steps twice: a Sluice pipeline
# (.sluice/p.hcl) and a GitHub Actions workflow (.github/workflows/w.yml).
bench_act() {
  command -v act >/dev/null || PATH=$PATH:$(go env GOPATH)/bin
  if ! command -v act >/dev/null; then
    echo "installing nektos/act" >&2
    go install github.com/nektos/act@latest
  fi
}

bench_steps100_repo() {
  local repo=$1 i
  mkdir -p "$repo/.sluice" "$repo/.github/workflows"
  {
    echo 'pipeline "steps100" {}'
    echo 'stage "s" {'
    for i in $(seq 1 100); do echo "  step \"run\" \"s$i\" { command = [\"true\"] }"; done
    echo '}'
  } > "$repo/.sluice/p.hcl"
  {
    echo 'name: steps100'
    echo 'on: push'
    echo 'jobs:'
    echo '  s:'
    echo '    runs-on: ubuntu-latest'
    echo '    steps:'
    for i in $(seq 1 100); do echo "      - run: \"true\""; done
  } > "$repo/.github/workflows/w.yml"
}
