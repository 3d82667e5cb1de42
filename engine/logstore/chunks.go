package logstore

import (
	"github.com/sluice-ci/sluice/internal/proc"

	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"sync"
)

// Info is what Stat says about a step's log.
type Info struct {
	// Size is how many bytes the log holds.
	Size int64 `json:"size"`
	// Complete says the log's writer closed it: it will not grow.
	Complete bool `json:"complete"`
}

// ErrGap is the error of a chunk that starts beyond the end of a log: the
// bytes between were never received, and the log would have a hole.
var ErrGap = errors.New("the chunk starts beyond the end of the log")

// Stat says how long a step's log is and whether it is complete. A log
// that does not exist gives an error wrapping fs.ErrNotExist.
func (s FS) Stat(run, stage, step string) (Info, error) {
	_, logPath, donePath, err := s.paths(run, stage, step)
	if err != nil {
		return Info{}, err
	}
	fi, err := os.Stat(logPath)
	if errors.Is(err, fs.ErrNotExist) {
		return Info{}, fmt.Errorf("no log for step %q of stage %q in run %q: %w", step, stage, run, fs.ErrNotExist)
	}
	if err != nil {
		return Info{}, fmt.Errorf("reading log of step %q of stage %q in run %q: %w", step, stage, run, err)
	}
	return Info{Size: fi.Size(), Complete: isComplete(fi, donePath)}, nil
}

// isComplete is complete for a log whose file info is at hand.
func isComplete(fi fs.FileInfo, done string) bool {
	if fi.Mode().Perm()&0o200 == 0 {
		return true
	}
	_, err := os.Stat(done)
	return err == nil
}

// AppendAt writes a chunk of a step's log that arrives from elsewhere, a
// runner on another host that ships its logs (package logship): p belongs
// at byte offset off of the log, which is created if needed. Bytes of p
// before the log's current size are taken to be there already and are
// skipped, so a chunk sent twice is written once, and two processes given
// the same chunk agree. A chunk that starts beyond the end would leave a
// hole: it is refused with an error wrapping ErrGap, and the Info returned
// says where the log ends. New bytes make a complete log incomplete again,
// as Writer does (a retried step writes more); last marks the log complete
// once p is in. AppendAt returns the log as it is afterwards.
//
// Chunks of one log are taken one at a time: in this process under a
// mutex, and across processes that share Dir (several servers on one
// volume) under an exclusive flock of the file, where there is flock.
func (s FS) AppendAt(run, stage, step string, off int64, p []byte, last bool) (Info, error) {
	dir, logPath, donePath, err := s.paths(run, stage, step)
	if err != nil {
		return Info{}, err
	}
	if off < 0 {
		return Info{}, fmt.Errorf("writing log of step %q of stage %q in run %q: negative offset %d", step, stage, run, off)
	}
	mu := chunkLock(logPath)
	mu.Lock()
	defer mu.Unlock()
	if off > 0 {
		// A log that is not there holds nothing: refused without creating
		// it.
		if _, err := os.Stat(logPath); errors.Is(err, fs.ErrNotExist) {
			return Info{}, fmt.Errorf("%w: the chunk starts at byte %d of the log of step %q of stage %q in run %q, which does not exist", ErrGap, off, step, stage, run)
		}
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return Info{}, fmt.Errorf("creating log of step %q of stage %q in run %q: %w", step, stage, run, err)
	}
	// Opened for reading, which a complete (read-only) log allows, to
	// hold the lock.
	f, err := os.OpenFile(logPath, os.O_RDONLY|os.O_CREATE, logMode)
	if err != nil {
		return Info{}, fmt.Errorf("opening log of step %q of stage %q in run %q: %w", step, stage, run, err)
	}
	defer f.Close() // releases the flock
	if err := proc.Lock(f); err != nil {
		return Info{}, fmt.Errorf("locking log of step %q of stage %q in run %q: %w", step, stage, run, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return Info{}, fmt.Errorf("reading log of step %q of stage %q in run %q: %w", step, stage, run, err)
	}
	info := Info{Size: fi.Size(), Complete: isComplete(fi, donePath)}
	if off > info.Size {
		return info, fmt.Errorf("%w: the chunk starts at byte %d of the log of step %q of stage %q in run %q, which holds %d", ErrGap, off, step, stage, run, info.Size)
	}
	changed := false
	if skip := info.Size - off; skip < int64(len(p)) {
		fresh := p[skip:]
		if info.Complete {
			// Written again: followers must wait for the new end.
			if err := os.Chmod(logPath, logMode); err != nil {
				return info, fmt.Errorf("reopening log of step %q of stage %q in run %q: %w", step, stage, run, err)
			}
			if err := os.Remove(donePath); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return info, fmt.Errorf("reopening log of step %q of stage %q in run %q: %w", step, stage, run, err)
			}
			info.Complete = false
		}
		w, err := os.OpenFile(logPath, os.O_WRONLY, 0)
		if err != nil {
			return info, fmt.Errorf("writing log of step %q of stage %q in run %q: %w", step, stage, run, err)
		}
		// At the size read under the lock, not O_APPEND: whatever another
		// writer did, these bytes go where they belong.
		n, err := w.WriteAt(fresh, info.Size)
		info.Size += int64(n)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		notify(logPath)
		if err != nil {
			return info, fmt.Errorf("writing log of step %q of stage %q in run %q: %w", step, stage, run, err)
		}
	}
	if last && !info.Complete {
		// After the last write, as fileWriter.Close does.
		if err := os.Chmod(logPath, logMode&^0o222); err != nil {
			return info, fmt.Errorf("marking log of step %q of stage %q in run %q complete: %w", step, stage, run, err)
		}
		info.Complete = true
		changed = true
	}
	if changed {
		notify(logPath)
	}
	return info, nil
}

// chunkLocks serialise AppendAt on one log within this process (flock
// does not, between two descriptors of one process on every system).
var chunkLocks [64]sync.Mutex

func chunkLock(path string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(path))
	return &chunkLocks[h.Sum32()%uint32(len(chunkLocks))]
}
