# hello: the smallest useful pipeline. Every step runs on the runner's host,
# so it needs nothing but a shell: try `sluice plan examples/hello/.sluice`.
pipeline "hello" {
  description = "Say hello, check the workspace, and pass a value between steps"

  on "push" {
    branches = ["main"]
  }
  on "manual" {
    input "name" {
      description = "who to greet"
      default     = "world"
    }
  }
}

variable "greeting" {
  type    = string
  default = "Hello"
}

stage "greet" {
  step "run" "hello" {
    command = ["echo", "${var.greeting}, ${pipeline.inputs.name}!"]
  }
  step "run" "facts" {
    script  = <<-EOT
      echo "commit ${git.short_sha} on ${git.branch}"
      echo "today=$(date +%A)" >> "$SLUICE_OUTPUT"
    EOT
    outputs = ["today"]
  }
}

stage "check" {
  step "run" "workspace" {
    script = "ls -la"
  }
  step "run" "report" {
    command = ["echo", "Checked on ${step.facts.today}."]
  }
}
