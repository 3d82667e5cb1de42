package local

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/sluice-ci/sluice/engine/logstore"
	"github.com/sluice-ci/sluice/internal/proc"
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
	return proc.WriteRecord(serverFile(home), info)
}

// unpublish removes the record if it is still this process's.
func unpublish(home string) {
	var info ServerInfo
	proc.RemoveRecord(serverFile(home), &info, func() int { return info.PID })
}

// Published returns the server another sluice process hosts for home. It
// returns an error wrapping fs.ErrNotExist when there is none, including
// when the process that wrote the record has died.
func Published(home string) (ServerInfo, error) {
	var info ServerInfo
	err := proc.ReadRecord(serverFile(home), &info, func() int { return info.PID })
	return info, err
}

// Logs returns the log store of home: where this machine's runner writes.
func Logs(home string) *logstore.FS {
	return &logstore.FS{Dir: filepath.Join(home, "logs")}
}
