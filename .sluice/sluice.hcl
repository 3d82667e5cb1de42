# Sluice builds itself: go vet and the unit tests in containers of the Go
# toolchain, then the sluice image (deploy/image/Dockerfile) built with
# BuildKit, pushed and tried; a tag v* also scans and releases it, as the
# go-service example does. `make image` runs it:
#
#   sluice images                           # the base images, into the local registry
#   sluice run --event manual --dirty       # the working tree, as it is
#   sluice run --event tag --ref v0.1.0     # a release, pushed to the local registry
#
# A dry run (sluice run --dry-run) builds the image but pushes nothing, so
# the try stage, which pulls the image, skips itself in one
# (when = !pipeline.dry_run), and with it the release that follows it.
#
# With nothing configured, a tag run reports the scan (no Harbor) and the
# tag and release (no GitHub credentials) as dry runs; the runner's
# environment configures them (SLUICE_HARBOR_URL, HARBOR_USERNAME and
# HARBOR_PASSWORD; GITHUB_TOKEN).
#
# Go in the containers downloads modules through var.goproxy (make image
# gives it `go env GOPROXY`) over HTTPS. The toolchain image has no CA
# certificates, so the stage first copies the runner's CA bundle into the
# workspace (deploy/image/prepare.sh ca) and points SSL_CERT_FILE at it:
# the containers trust what the runner trusts. go.sum lists every module,
# so no checksum database is asked.
pipeline "sluice" {
  description = "Check, test, build and release Sluice"

  on "push" {
    branches = ["main", "release/*"]
  }
  on "pull_request" {
    branches = ["main"]
  }
  on "tag" {
    pattern = "v*"
  }
  on "manual" {}

  concurrency {
    group              = "sluice-${git.ref}"
    cancel_in_progress = true
  }
}

# localhost:5000 is the local registry that sluice run serves (it puts the
# address it took here); `sluice images` pushes the base images to it.
variable "registry" {
  type        = string
  default     = "localhost:5000"
  description = "the registry the image is pushed to and the base images come from"
}

variable "goproxy" {
  type        = string
  default     = "https://proxy.golang.org,direct"
  description = "GOPROXY of the builds in containers"
}

locals {
  version = git.tag != "" ? git.tag : "0.0.0-${git.short_sha}"
  image   = "${var.registry}/sluice/sluice"
  golang  = "${var.registry}/golang:local"
  # The module cache and the build cache are kept from run to run (one
  # BuildKit cache mount each, shared by the stages of this pipeline), so
  # that a second run downloads nothing and compiles only what changed.
  go_cache = ["/go/pkg/mod", "/root/.cache/go-build"]
  go_env = {
    GOPROXY       = var.goproxy
    SSL_CERT_FILE = "/workspace/.image/ca-certificates.crt"
  }
}

# go vet, then the unit tests that need nothing but Go, in one workspace
# (the CA bundle copied once). The rest of the suite starts
# real servers that a container of the toolchain image does not have:
# buildkitd and runc (runners/buildkitd, runners/local, runners/artifacts,
# steps/image, steps/container, steps/buildkit, cmd/sluice/cli,
# deploy/image), PostgreSQL (engine/embedded, cmd/sluice), Chromium and
# Prometheus (server, steps/verify, engine), network namespaces
# (cmd/sluice), and git (runners/workspace, steps/argocd,
# server/githubapp/githubfake, dsl's module tests): `make test` runs all of
# it on a machine that has them. What runs here is the pipeline language
# (dsl, its plan, the examples and this file), the step kinds that talk to
# a service through a fake (release, scan, dagger) or run on the host
# (run, junit), the webhook and inbox code, the log store and the helpers;
# -short, and dsl without the tests of git modules.
stage "test" {
  env = local.go_env
  step "run" "trust" {
    command = ["sh", "deploy/image/prepare.sh", "ca", ".image"]
  }
  step "run" "vet" {
    image   = local.golang
    command = ["go", "vet", "./..."]
    cache   = local.go_cache
    timeout = "30m"
  }
  step "run" "unit" {
    image = local.golang
    command = ["go", "test", "-short", "-count=1", "-skip", "^TestGitModule|^TestModuleFromRepository",
      "./dsl/...", "./examples", "./steps", "./steps/junit", "./steps/release", "./steps/scan", "./steps/dagger",
      "./steps/run", "./steps/verify/watch", "./server/ansi", "./server/webhook", "./server/inbox",
      "./engine/logstore/...", "./engine/embedded/pgurl", "./runners/registry", "./internal/metrics",
    "./cmd/sluice-exec"]
    cache   = local.go_cache
    timeout = "30m"
  }
}

stage "build" {
  step "run" "prepare" {
    command = ["sh", "deploy/image/prepare.sh", "all", ".image"]
  }
  step "image" "sluice" {
    context    = "."
    dockerfile = "deploy/image/Dockerfile"
    build_args = { VERSION = local.version, REGISTRY = var.registry, GOPROXY = var.goproxy }
    labels     = { "org.opencontainers.image.version" = local.version }
    tags       = ["${local.image}:${local.version}"]
    push       = true
    timeout    = "45m"
  }
}

# The image as a runner would use it, as its non-root user: the three
# commands answer, git runs, and SLUICE_HOME is writable. Container steps
# run as root whatever the image's USER, so the checks run as the image's
# user through su. A dry run pushed no image to pull: it skips this.
stage "try" {
  needs = [stage.build]
  when  = !pipeline.dry_run
  step "run" "try" {
    image  = step.sluice.digest_ref
    script = <<-EOT
      test "$(stat -c %u:%g "$SLUICE_HOME")" = 65532:65532
      su -s /bin/sh sluice -c '
        set -ex
        test "$(id -u):$(id -g)" = 65532:65532
        sluice version
        sluice --help >/dev/null
        sluice server --help >/dev/null
        sluice runner --help >/dev/null
        git --version
        touch /var/lib/sluice/written && rm /var/lib/sluice/written
      '
    EOT
  }
}

# Only an image that passed try is scanned and released.
stage "release" {
  when = git.tag != ""
  step "scan" "sluice-scan" {
    image   = step.sluice.digest_ref
    fail_on = "high"
  }
  # The runner's GITHUB_TOKEN tags and releases.
  step "release" "gh" {
    tag   = git.tag
    notes = "generate"
  }
}
