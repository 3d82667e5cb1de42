package proc

import (
	"os"
	"os/exec"
	"path/filepath"
)

// Find locates a program sluice starts: the path in the environment
// variable env when set, else name next to the running executable (where
// `make build` and `make tools` put it), else name on PATH. It returns ""
// when there is none; a path from env is returned as it is, for the caller
// to report when it does not exist.
func Find(env, name string) string {
	if p := os.Getenv(env); p != "" {
		return p
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return ""
}
