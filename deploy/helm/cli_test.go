package helm

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// commands are the sluice commands the chart's containers run.
var commands = map[string]bool{"server": true, "runner": true, "admin setup": true}

// TestFlagsAcceptedBySluice gives every sluice command the chart renders
// to the real binary, built from this repository: `sluice <command>
// <args> --help` parses every flag, with its value, before it prints the
// help, so a misspelt flag or a value of the wrong type (a duration, a
// number) fails here rather than in a crash-looping pod.
func TestFlagsAcceptedBySluice(t *testing.T) {
	bin := buildSluice(t)
	for _, file := range valueSets {
		t.Run(setName(file), func(t *testing.T) {
			m := renderSet(t, file)
			ran := map[string]bool{}
			for owner, spec := range m.pods() {
				for _, c := range allContainers(spec) {
					if c.Name == "buildkitd" {
						continue
					}
					args := expand(c.Args, &c, strings.TrimPrefix(owner, "Deployment ")+"-5d8f7c9b6-x2x7q")
					command, flags := splitCommand(args)
					if !commands[command] {
						t.Errorf("%s, container %s: runs sluice %q, not one of the chart's commands", owner, c.Name, command)
						continue
					}
					for _, f := range flags {
						if !strings.HasPrefix(f, "--") {
							t.Errorf("%s, container %s: %q is no flag; sluice %s takes no arguments", owner, c.Name, f, command)
						}
					}
					cmd := exec.Command(bin, append(args, "--help")...)
					cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "SLUICE_HOME=" + t.TempDir()}
					out, err := cmd.CombinedOutput()
					if err != nil {
						t.Errorf("%s, container %s: sluice refuses its arguments: %v\n%s\nargs: %q", owner, c.Name, err, out, args)
						continue
					}
					if !strings.Contains(string(out), "sluice "+command) {
						t.Errorf("%s, container %s: the help printed is not sluice %s's:\n%s", owner, c.Name, command, out)
					}
					ran[command] = true
				}
			}
			for _, want := range []string{"server", "runner"} {
				if !ran[want] {
					t.Errorf("no container runs sluice %s", want)
				}
			}
		})
	}
}

// TestFlagsRefused makes sure the check above can fail: sluice refuses a
// flag it does not have and a drain timeout that is no duration.
func TestFlagsRefused(t *testing.T) {
	bin := buildSluice(t)
	for _, args := range [][]string{
		{"runner", "--label=linux"},
		{"runner", "--drain-timeout=30 minutes"},
		{"server", "--webhook-secret=x"},
	} {
		cmd := exec.Command(bin, append(args, "--help")...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("sluice took %q:\n%s", args, out)
		}
	}
}

// TestMain removes the sluice binary the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	if sluiceDir != "" {
		os.RemoveAll(sluiceDir)
	}
	os.Exit(code)
}

var (
	sluiceOnce sync.Once
	sluiceDir  string
	sluiceBin  string
	sluiceErr  error
)

// buildSluice builds the sluice binary of this repository (the main
// module, two directories up), once for all the tests.
func buildSluice(t *testing.T) string {
	t.Helper()
	sluiceOnce.Do(func() {
		root, err := filepath.Abs(filepath.Join("..", ".."))
		if err != nil {
			sluiceErr = err
			return
		}
		if sluiceDir, sluiceErr = os.MkdirTemp("", "sluice-helm-test"); sluiceErr != nil {
			return
		}
		sluiceBin = filepath.Join(sluiceDir, "sluice")
		cmd := exec.Command("go", "build", "-buildvcs=false", "-o", sluiceBin, "./cmd/sluice")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			sluiceErr = fmt.Errorf("building sluice in %s: %w\n%s", root, err, out)
		}
	})
	if sluiceErr != nil {
		t.Fatal(sluiceErr)
	}
	return sluiceBin
}

// splitCommand splits a container's args into the sluice command (the
// words before the first flag) and the rest.
func splitCommand(args []string) (string, []string) {
	i := 0
	for i < len(args) && !strings.HasPrefix(args[i], "-") {
		i++
	}
	return strings.Join(args[:i], " "), args[i:]
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expand replaces $(VAR) in args with the container's environment, as the
// kubelet does: a value, or the pod's name for a fieldRef to
// metadata.name. A reference to a variable the container lacks stays as
// it is, as it would in the pod.
func expand(args []string, c *corev1.Container, podName string) []string {
	vals := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			vals[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			vals[e.Name] = podName
		}
	}
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = varRef.ReplaceAllStringFunc(a, func(ref string) string {
			if v, ok := vals[varRef.FindStringSubmatch(ref)[1]]; ok {
				return v
			}
			return ref
		})
	}
	return out
}
