# The go-service pipeline: from build to monitor.
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

variable "registry" {
  type        = string
  default     = "localhost:5000/go-service"
  description = "where images are pushed"
}

variable "gitops_repo" {
  type        = string
  default     = "https://github.com/sluice-ci/go-service-deploy"
  description = "the GitOps repository Argo CD watches"
}

variable "error_budget" {
  type    = number
  default = 0.01
  validation {
    condition     = var.error_budget > 0 && var.error_budget < 1
    error_message = "error_budget is a ratio between 0 and 1, like 0.01."
  }
}

secret "harbor" {
  env = "HARBOR_ROBOT_TOKEN"
}

secret "github" {
  env = "GITHUB_TOKEN"
}

locals {
  version = git.tag != "" ? git.tag : "0.0.0-${git.short_sha}"
  image   = "${var.registry}/api"
}

stage "build" {
  step "image" "api" {
    context    = "."
    dockerfile = "Dockerfile"
    build_args = { VERSION = local.version }
    labels     = { "org.opencontainers.image.revision" = git.sha }
    tags       = ["${local.image}:${local.version}"]
    push       = true
  }
}

stage "test" {
  needs = [stage.build]
  matrix {
    race = ["false", "true"]
  }
  step "run" "unit" {
    image   = "${var.registry}/golang:local"
    command = ["go", "test", "-race=${matrix.race}", "./..."]
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
    password = secret.harbor
  }
  step "release" "gh" {
    tag   = git.tag
    notes = "generate"
    token = secret.github
  }
}

stage "deploy" {
  needs = [stage.release]
  approval {
    approvers = ["team:sre"]
    timeout   = "24h"
  }
  step "argocd" "prod" {
    app   = "go-service-${pipeline.inputs.environment}"
    image = step.api.digest_ref
    gitops {
      repo = var.gitops_repo
      file = "apps/go-service/kustomization.yaml"
    }
    wait = "healthy"
  }
}

stage "monitor" {
  needs = [stage.deploy]
  step "verify" "errors" {
    prometheus = "http://localhost:9090"
    query      = "sum(rate(http_requests_total{code=~\"5..\"}[5m])) / sum(rate(http_requests_total[5m]))"
    below      = var.error_budget
    for        = "10m"
    interval   = "30s"
    on_failure = "rollback"
  }
}
