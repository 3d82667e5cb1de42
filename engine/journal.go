package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// Step journals. A batch's synchronous heartbeat costs a round trip through
// the server and a database write per step, about as much as a short step
// itself. It protects against two different losses:
//
//   - the runner's process dies and comes back on the same machine (the
//     local stack after a crash, a runner service restarted): the stage is
//     prepared again on the same runner, in the same workspace;
//   - the runner is gone for good, or cut off: the stage moves to another
//     runner, in a fresh workspace.
//
// For the first, a journal in the workspace's keeping does the same job
// without the server: RunSteps appends each finished step to it before it
// starts the next, and a batch started again in the same workspace takes
// the steps it finds there as finished instead of running them. Writing a
// line to a file survives the death of the process (it is in the kernel's
// page cache once write returns), which is what a crash of the runner is.
// The journal is not synced to disk: when the whole machine goes down, the
// steps of its last moments (those the server had not stored either) run
// again, as does the step that was running.
// For the second, the workspace and its journal stay behind, and what
// counts is the progress the server stored: heartbeats still carry it, at
// most every JournalHeartbeatGap, but the batch does not wait for them. It
// stops before the next step only when a step that finished JournalLead ago
// is not stored yet, so that a runner cut off from the server stops soon
// instead of running the stage alone.

// StepJournals is implemented by Workspaces that keep a stage's workspace
// in place when its runner restarts (PrepareWorkspace gives it back as it
// was), and can keep a journal of the steps finished in it beside it. The
// journal must go when the workspace goes or is made anew; the engine
// removes nothing.
type StepJournals interface {
	// StepJournal names the journal file of the workspace dir prepared
	// for req. The file need not exist.
	StepJournal(req WorkspaceRequest, dir string) (string, error)
}

// JournalLead is how long a finished step of a batch with a journal may go
// unstored by the server before the batch waits for it.
const JournalLead = 5 * time.Second

// JournalHeartbeatGap is the least time between two heartbeats of a batch
// with a journal.
const JournalHeartbeatGap = 50 * time.Millisecond

// journalEntry is a line of a journal: a finished step of a stage, and the
// workspace it ran in.
type journalEntry struct {
	Workspace string          `json:"ws"`
	Index     int             `json:"i"`
	Step      string          `json:"step"`
	Result    BatchStepResult `json:"res"`
}

// journal is the open journal of a batch.
type journal struct {
	f    *os.File
	ws   string
	done map[int]journalEntry
}

// openJournal opens the journal of the batch's workspace and reads the
// steps finished there before. It returns nil when the runner's workspaces
// keep no journal.
func (a *Activities) openJournal(in StepsInput) (*journal, error) {
	sj, ok := a.Workspaces.(StepJournals)
	if !ok {
		return nil, nil
	}
	path, err := sj.StepJournal(WorkspaceRequest{RunID: in.RunID, Pipeline: in.Pipeline, StageID: in.StageID, Git: in.Git}, in.Workspace)
	if err != nil {
		return nil, err
	}
	j := &journal{ws: in.Workspace}
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading the journal of stage %q: %w", in.StageID, err)
	}
	for line := range bytes.Lines(b) {
		var e journalEntry
		// A line cut short (the machine went down while it was written)
		// does not parse, and its step counts as not finished.
		if json.Unmarshal(line, &e) == nil && e.Workspace == in.Workspace {
			if j.done == nil {
				j.done = map[int]journalEntry{}
			}
			j.done[e.Index] = e
		}
	}
	j.f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the journal of stage %q: %w", in.StageID, err)
	}
	return j, nil
}

// finished returns the result of the index-th step of the stage when the
// journal holds it.
func (j *journal) finished(index int, step string) (BatchStepResult, bool) {
	if j == nil {
		return BatchStepResult{}, false
	}
	e, ok := j.done[index]
	return e.Result, ok && e.Step == step
}

// record appends a finished step in one write.
func (j *journal) record(index int, step string, res BatchStepResult) error {
	line, err := json.Marshal(journalEntry{Workspace: j.ws, Index: index, Step: step, Result: res})
	if err != nil {
		return err
	}
	_, err = j.f.Write(append(line, '\n'))
	return err
}

func (j *journal) close() {
	if j != nil {
		j.f.Close()
	}
}
