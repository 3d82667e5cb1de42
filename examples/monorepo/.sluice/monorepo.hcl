# monorepo: one pipeline for several services. Path filters start the
# pipeline only when something relevant changed, changed() skips the stages
# of services that did not change, and a matrix tests every service on
# every supported Go version.
pipeline "monorepo" {
  on "push" {
    branches     = ["main"]
    paths        = ["services/**", "libs/**", ".sluice/**"]
    paths_ignore = ["**/*.md"]
  }
  on "pull_request" {
    branches = ["main"]
    paths    = ["services/**", "libs/**"]
  }
  max_parallel = 4
}

locals {
  # A change to a shared library rebuilds every service.
  shared   = changed("libs/**")
  services = ["api", "web"]
}

stage "lint" {
  step "run" "vet" {
    command = ["go", "vet", "./..."]
  }
}

stage "test" {
  needs = [stage.lint]
  matrix {
    service = local.services
    go      = ["1.25", "1.26"]
    exclude {
      service = "web"
      go      = "1.25"
    }
  }
  when = local.shared || changed("services/${matrix.service}/**")
  step "run" "unit" {
    command     = ["go", "test", "./..."]
    working_dir = "services/${matrix.service}"
    env         = { GOTOOLCHAIN = "go${matrix.go}" }
  }
}

stage "build-api" {
  needs = [stage.test]
  when  = local.shared || changed("services/api/**")
  step "run" "build-api" {
    command     = ["go", "build", "-o", "../../bin/api", "."]
    working_dir = "services/api"
  }
}

stage "build-web" {
  needs = [stage.test]
  when  = local.shared || changed("services/web/**")
  step "run" "build-web" {
    command     = ["go", "build", "-o", "../../bin/web", "."]
    working_dir = "services/web"
  }
}
