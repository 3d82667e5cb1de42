package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/sluice-ci/sluice/internal/proc"
	"github.com/sluice-ci/sluice/internal/testing/buildtest"
	"github.com/sluice-ci/sluice/runners/buildkitd"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"sluice": func() { os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr)) },
		// sluice-changed is sluice with a workflow changed
		// (replayhistory_test.go).
		"sluice-changed": func() { os.Exit(mainChanged()) },
	})
}

// TestScripts runs the command line as a user types it: each file in
// testdata/script is a sequence of sluice commands with the files they
// work on and the output they must print.
func TestScripts(t *testing.T) {
	server := buildServer(t)
	root, err := buildtest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// Runs with image steps or containers start the buildkitd that make
	// tools builds.
	buildkitdBin := buildtest.Binary(root)
	// Container steps run their commands with sluice-exec.
	helper, err := buildtest.BuildHelper(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		UpdateScripts:       os.Getenv("UPDATE_SCRIPTS") == "1",
		// otlp receives traces (traces_test.go).
		Cmds: map[string]func(*testscript.TestScript, bool, []string){"otlp": otlpCmd},
		Setup: func(env *testscript.Env) error {
			// Runs use a fresh home and the embedded server built here.
			home := filepath.Join(env.WorkDir, ".sluice-home")
			env.Setenv("SLUICE_HOME", home)
			// The first command of a script starts the home's server in
			// the background: it stops with the script, as do the servers
			// of other homes the script made.
			env.Defer(func() {
				records, _ := filepath.Glob(filepath.Join(env.WorkDir, "*", "server", "http.json"))
				for _, r := range records {
					stopHomeServer(filepath.Dir(filepath.Dir(r)))
				}
			})
			env.Setenv("SLUICE_TEMPORAL_BIN", server)
			env.Setenv("SLUICE_EXEC_BIN", helper)
			env.Setenv(buildkitd.EnvBinary, buildkitdBin)
			// Scripts that run the repository's examples copy them from here.
			env.Setenv("SLUICE_SOURCE", root)
			env.Setenv("GIT_CONFIG_GLOBAL", filepath.Join(env.WorkDir, ".gitconfig"))
			return os.WriteFile(filepath.Join(env.WorkDir, ".gitconfig"), []byte("[user]\n\tname = t\n\temail = t@example.com\n[init]\n\tdefaultBranch = main\n"), 0o644)
		},
	})
}

// buildServer builds sluice-temporal, which sluice run starts, once.
func buildServer(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		return "sluice-temporal-not-built-in-short-mode"
	}
	out := filepath.Join(t.TempDir(), "sluice-temporal")
	if b, err := exec.Command("go", "build", "-o", out, "github.com/sluice-ci/sluice/cmd/sluice-temporal").CombinedOutput(); err != nil {
		t.Fatalf("building sluice-temporal: %v\n%s", err, b)
	}
	return out
}

// stopHomeServer stops the server that runs for home, if one does, as
// sluice server stop does, and kills it if it does not stop.
func stopHomeServer(home string) {
	r, err := runningServer(home)
	if err != nil {
		return
	}
	_ = syscall.Kill(r.PID, syscall.SIGTERM)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && proc.Alive(r.PID) {
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(r.PID, syscall.SIGKILL)
}
