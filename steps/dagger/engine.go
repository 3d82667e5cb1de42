package dagger

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
)

// The environment variables through which the SDK finds an engine.
const (
	EnvSessionPort  = "DAGGER_SESSION_PORT"
	EnvSessionToken = "DAGGER_SESSION_TOKEN"
	EnvCLI          = "_EXPERIMENTAL_DAGGER_CLI_BIN"
)

// ErrNoEngine says that the runner reaches no Dagger engine, and how to give
// it one.
var ErrNoEngine = errors.New("this runner reaches no Dagger engine. Start the runner inside an engine session " +
	"(`dagger run sluice ...` sets " + EnvSessionPort + " and " + EnvSessionToken + "), or put the dagger CLI on its PATH " +
	"(or name it in " + EnvCLI + "); the CLI starts an engine with Docker, or connects to the one _EXPERIMENTAL_DAGGER_RUNNER_HOST names")

// Engine is how a runner reaches a Dagger engine: exactly one field is set.
type Engine struct {
	// Session is the address of the engine session the runner runs in.
	Session string
	// CLI is the path of the dagger CLI, which starts a session per step.
	CLI string
}

func (e Engine) String() string {
	if e.Session != "" {
		return "the Dagger engine session at " + e.Session
	}
	return "a Dagger engine session started by " + e.CLI
}

// Detect tells how this process reaches a Dagger engine, from its
// environment, in the order the SDK tries them. It returns ErrNoEngine when
// there is no way, and an error that says what to fix when the environment
// names one that cannot work.
func Detect() (Engine, error) {
	if port, ok := os.LookupEnv(EnvSessionPort); ok {
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			return Engine{}, fmt.Errorf("%s=%q is not a port number; unset it, or set it to the port of a Dagger engine session", EnvSessionPort, port)
		}
		if os.Getenv(EnvSessionToken) == "" {
			return Engine{}, fmt.Errorf("%s is set but %s is not; an engine session gives both, set them together", EnvSessionPort, EnvSessionToken)
		}
		return Engine{Session: "127.0.0.1:" + port}, nil
	}
	if bin := os.Getenv(EnvCLI); bin != "" {
		p, err := exec.LookPath(bin)
		if err != nil {
			return Engine{}, fmt.Errorf("%s=%q names no dagger CLI that can be run: %w", EnvCLI, bin, err)
		}
		return Engine{CLI: p}, nil
	}
	if p, err := exec.LookPath("dagger"); err == nil {
		return Engine{CLI: p}, nil
	}
	return Engine{}, ErrNoEngine
}

var cliEnv sync.Mutex

// useCLI points the SDK at the CLI Detect found, which it otherwise finds
// only through EnvCLI: without it the SDK would download a CLI.
func useCLI(e Engine) error {
	if e.CLI == "" {
		return nil
	}
	cliEnv.Lock()
	defer cliEnv.Unlock()
	if os.Getenv(EnvCLI) != "" {
		return nil
	}
	return os.Setenv(EnvCLI, e.CLI)
}
