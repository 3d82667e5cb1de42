# The go-service pipeline: from build to monitor.
#
# A push (or a manual run) builds the image, pushes it and runs the tests in
# containers of that toolchain; a tag v* also scans and releases it, then
# deploys it once someone approves, and watches the deploy. Try it with
# `make demo` and `make demo-release`, or:
#
#   sluice images                                # the base images, into the local registry
#   sluice run examples/go-service/.sluice --event manual
#   sluice run examples/go-service/.sluice --event tag --ref v0.1.0 --dry-run
#   sluice run examples/go-service/.sluice --event tag --ref v0.1.0
#   sluice approve <run> deploy                  # from another terminal
#
# With nothing configured, the tag run does for real what this machine can:
# the build, the tests and the GitOps commit (into a local bare
# repository: see deploy/gitops-repo.sh). It reports as a dry run the scan
# (no Harbor), the tag and release (no GitHub credentials) and the sync (no
# Argo CD), and skips the monitor stage (no Prometheus). The runner's
# environment configures them, as it does for every pipeline it runs:
# SLUICE_HARBOR_URL, HARBOR_USERNAME and HARBOR_PASSWORD for the scan;
# GITHUB_TOKEN for the release; ARGOCD_SERVER and ARGOCD_AUTH_TOKEN for the
# sync; --var gitops_repo and --var prometheus for the rest.
pipeline "go-service" {
  description = "Build, test, release and deploy the go-service example"

  on "push" {
    branches = ["main", "release/*"]
    paths    = ["**/*.go", "go.mod", "Dockerfile", ".sluice/**"]
  }
  on "pull_request" {
    branches = ["main"]
  }
  on "tag" {
    pattern = "v*"
  }
  on "manual" {
    input "environment" {
      description = "where to deploy"
      default     = "staging"
      options     = ["staging", "production"]
    }
  }

  concurrency {
    group              = "go-service-${git.ref}"
    cancel_in_progress = true
  }
}

# localhost:5000 is the local registry that sluice run serves (or the one
# SLUICE_REGISTRY names, or the port it took when 5000 was busy: sluice run
# puts its address here). `sluice images` pushes the base images to it.
variable "registry" {
  type        = string
  default     = "localhost:5000"
  description = "the registry images are pushed to and the base images come from"
}

variable "gitops_repo" {
  type        = string
  default     = ""
  description = "the GitOps repository Argo CD watches, like https://github.com/acme/go-service-deploy; empty: a local bare repository made from deploy/"
}

variable "prometheus" {
  type        = string
  default     = ""
  description = "the Prometheus that watches the deploy, like http://prometheus:9090; empty skips the monitor stage"
}

variable "error_budget" {
  type    = number
  default = 0.01
  validation {
    condition     = var.error_budget > 0 && var.error_budget < 1
    error_message = "error_budget is a ratio between 0 and 1, like 0.01."
  }
}

locals {
  version = git.tag != "" ? git.tag : "0.0.0-${git.short_sha}"
  image   = "${var.registry}/go-service/api"
  golang  = "${var.registry}/golang:local"
}

stage "build" {
  step "image" "api" {
    context    = "."
    dockerfile = "Dockerfile"
    build_args = { VERSION = local.version, REGISTRY = var.registry }
    labels     = { "org.opencontainers.image.revision" = git.sha }
    tags       = ["${local.image}:${local.version}"]
    push       = true
  }
}

stage "test" {
  needs = [stage.build]
  # Twice: once with coverage, once in random order to catch tests that
  # depend on each other. (-race needs cgo, which the toolchain image has
  # not.)
  matrix {
    flags = ["-cover", "-shuffle=on"]
  }
  step "run" "unit" {
    image   = local.golang
    command = ["go", "test", matrix.flags, "./..."]
    cache   = ["/root/.cache/go-build"]
    timeout = "10m"
    retry {
      attempts = 2
    }
  }
}

stage "release" {
  needs = [stage.test]
  when  = git.tag != ""
  step "scan" "api-scan" {
    image   = step.api.digest_ref
    fail_on = "high"
    allow {
      id     = "CVE-2024-45337"
      until  = "2027-01-31"
      reason = "not reachable: the service does not use ssh"
    }
  }
  # The runner's GITHUB_TOKEN tags and releases; a step can bring its own
  # with token = secret.<name> and a secret block.
  step "release" "gh" {
    tag   = git.tag
    notes = "generate"
  }
}

# Only a release is deployed, so the deploy follows the release stage on a
# tag; a manual run on a tag chooses the environment:
#   sluice run --event manual --ref v1.2.0 --input environment=production
stage "deploy" {
  needs = [stage.release]
  approval {
    approvers = ["team:sre"]
    timeout   = "24h"
  }
  # var.gitops_repo, or the local bare repository deploy/gitops-repo.sh
  # makes when it is empty.
  step "run" "gitops-repo" {
    command = ["sh", "deploy/gitops-repo.sh", var.gitops_repo]
    outputs = ["repo"]
  }
  step "argocd" "prod" {
    app   = "go-service-${pipeline.inputs.environment}"
    image = step.api.digest_ref
    gitops {
      repo       = step.gitops-repo.repo
      file       = "apps/go-service/kustomization.yaml"
      image_name = "go-service-api"
    }
    wait = "healthy"
  }
}

stage "monitor" {
  needs = [stage.deploy]
  when  = var.prometheus != ""
  step "verify" "errors" {
    prometheus = var.prometheus
    query      = "sum(rate(http_requests_total{code=~\"5..\"}[5m])) / sum(rate(http_requests_total[5m]))"
    below      = var.error_budget
    for        = "10m"
    interval   = "30s"
    on_failure = "rollback"
  }
}
