// Command approvals measures what runs waiting on approval cost: it starts
// N runs of a pipeline whose first stage waits for an approval against the
// server and runner of a running `sluice dev`, waits until every run
// waits, and prints the resident memory of the runner (sluice dev) and of
// the server (sluice-temporal), before and after. See docs/benchmarks.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/sluice-ci/sluice/dsl"
	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/engine"
	"github.com/sluice-ci/sluice/runners/local"
)

const pipeline = `
pipeline "gate" {}
stage "deploy" {
  approval {
    approvers = ["team:sre"]
    timeout   = "24h"
  }
  step "run" "deploy" {
    command = ["true"]
  }
}
`

func main() {
	n := flag.Int("n", 1000, "how many runs")
	devPID := flag.Int("dev-pid", 0, "pid of sluice dev (the runner)")
	flag.Parse()
	home, err := local.Home()
	if err != nil {
		log.Fatal(err)
	}
	info, err := local.Published(home)
	if err != nil {
		log.Fatalf("start sluice dev first: %v", err)
	}
	dir, _ := os.MkdirTemp("", "approvals")
	os.WriteFile(filepath.Join(dir, "p.hcl"), []byte(pipeline), 0o644)
	src, diags := dsl.Load(dir)
	p, more := dsl.Compile(src, dsl.Options{Git: plan.Git{Event: "push", Branch: "main"}})
	if diags = append(diags, more...); diags.HasErrors() {
		log.Fatal(diags)
	}
	c, err := client.Dial(client.Options{HostPort: info.Address, Namespace: info.Namespace})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	fmt.Printf("before: runner %s, server %s\n", rss(*devPID), rss(serverPID(home)))
	ctx := context.Background()
	start := time.Now()
	ids := make([]string, *n)
	for i := range ids {
		if ids[i], err = engine.Start(ctx, c, *p, engine.StartOptions{}); err != nil {
			log.Fatal(err)
		}
	}
	for waiting := 0; waiting < *n; {
		waiting = 0
		for _, id := range ids {
			st, err := engine.Status(ctx, c, id)
			if err == nil && len(st.Stages) > 0 && st.Stages[0].State == engine.StateWaitingApproval {
				waiting++
			}
		}
		if waiting < *n {
			time.Sleep(time.Second)
		}
	}
	fmt.Printf("%d runs waiting on approval after %s\n", *n, time.Since(start).Round(time.Millisecond))
	time.Sleep(5 * time.Second) // let caches settle
	fmt.Printf("after: runner %s, server %s\n", rss(*devPID), rss(serverPID(home)))
	for _, id := range ids {
		_ = engine.Cancel(ctx, c, id)
	}
}

func serverPID(home string) int {
	matches, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, m := range matches {
		b, _ := os.ReadFile(m)
		if strings.Contains(string(b), local.ServerBinary) && strings.Contains(string(b), home) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(m)))
			return pid
		}
	}
	return 0
}

// rss reads a process's resident memory from /proc.
func rss(pid int) string {
	if pid == 0 {
		return "?"
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.Atoi(strings.Fields(line)[1])
			return fmt.Sprintf("%d MB", kb/1024)
		}
	}
	return "?"
}
