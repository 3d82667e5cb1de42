package local

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sluice-ci/sluice/engine/logstore"
)

// Home returns the directory Sluice keeps its local state in: $SLUICE_HOME,
// or ~/.sluice.
func Home() (string, error) {
	if h := os.Getenv("SLUICE_HOME"); h != "" {
		return filepath.Abs(h)
	}
	dir, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("finding a home for Sluice's state: %w; set SLUICE_HOME", err)
	}
	return filepath.Join(dir, ".sluice"), nil
}

// ServerInfo is what a process hosting the embedded server publishes.
type ServerInfo struct {
	Address   string `json:"address"`
	Namespace string `json:"namespace"`
	PID       int    `json:"pid"`
}

func serverFile(home string) string { return filepath.Join(home, "server.json") }

// publish records where this process's server listens.
func publish(home string, info ServerInfo) error {
	b, err := json.Marshal(info)
	if err != nil {
		return err
	}
	tmp := serverFile(home) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("publishing the server address: %w", err)
	}
	return os.Rename(tmp, serverFile(home))
}

// unpublish removes the record if it is still this process's.
func unpublish(home string) {
	if info, err := Published(home); err == nil && info.PID == os.Getpid() {
		_ = os.Remove(serverFile(home))
	}
}

// Published returns the server another sluice process hosts for home. It
// returns an error wrapping fs.ErrNotExist when there is none, including
// when the process that wrote the record has died.
func Published(home string) (ServerInfo, error) {
	var info ServerInfo
	b, err := os.ReadFile(serverFile(home))
	if err != nil {
		return info, err
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return info, fmt.Errorf("reading %s: %w", serverFile(home), err)
	}
	if info.PID <= 0 || !alive(info.PID) {
		return info, fmt.Errorf("the process that hosted the server (pid %d) has exited: %w", info.PID, fs.ErrNotExist)
	}
	return info, nil
}

// Logs returns the log store of home: where this machine's runner writes.
func Logs(home string) *logstore.FS {
	return &logstore.FS{Dir: filepath.Join(home, "logs")}
}
