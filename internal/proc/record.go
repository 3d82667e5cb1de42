package proc

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
)

// WriteRecord writes v as JSON to path atomically, so that a reader never
// sees half a record.
func WriteRecord(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}

// ReadRecord reads the JSON record at path into v and checks that the
// process pid(v) that wrote it still lives. It returns an error wrapping
// fs.ErrNotExist when there is no record or its process has exited.
func ReadRecord(path string, v any, pid func() int) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if p := pid(); p <= 0 || !Alive(p) {
		return fmt.Errorf("the process that wrote %s (pid %d) has exited: %w", path, p, fs.ErrNotExist)
	}
	return nil
}

// RemoveRecord removes the record at path if this process wrote it.
func RemoveRecord(path string, v any, pid func() int) {
	if ReadRecord(path, v, pid) == nil && pid() == os.Getpid() {
		_ = os.Remove(path)
	}
}
