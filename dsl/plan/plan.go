package plan

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
)

// SchemaVersion is bumped whenever the JSON shape of a Plan changes in a way
// an engine has to know about, so that a runner can refuse a plan it does not
// understand instead of misreading it.
const SchemaVersion = 1

// Plan is the compiled, immutable form of a pipeline for one event. It holds
// only plain data: everything known at compile time is evaluated, and values
// known only at run time (step outputs, secrets) are Refs inside Templates.
type Plan struct {
	SchemaVersion int    `json:"schema_version"`
	Pipeline      string `json:"pipeline"`
	Description   string `json:"description,omitempty"`
	// Trigger records the event the plan was compiled for and whether the
	// pipeline's `on` blocks accept it.
	Trigger Trigger `json:"trigger"`
	Git     Git     `json:"git"`
	// Vars holds the final value of every variable, as JSON, so that a run
	// can be reproduced from its plan alone.
	Vars   map[string]json.RawMessage `json:"vars,omitempty"`
	Inputs map[string]string          `json:"inputs,omitempty"`
	// Secrets says where a runner finds each secret; values never appear.
	Secrets     []Secret     `json:"secrets,omitempty"`
	Concurrency *Concurrency `json:"concurrency,omitempty"`
	// Schedule is the pipeline's on "schedule" trigger, whatever the event:
	// the server turns the schedules of the default branch into Temporal
	// Schedules.
	Schedule *Schedule `json:"schedule,omitempty"`
	// MaxParallel bounds how many stages run at once; 0 means no bound.
	MaxParallel int                 `json:"max_parallel,omitempty"`
	Timeout     Duration            `json:"timeout,omitempty"`
	Env         map[string]Template `json:"env,omitempty"`
	// Stages are in a topological order that is stable for a given input:
	// every stage comes after the stages it needs.
	Stages []Stage `json:"stages"`
	// Digest is the SHA-256 of the plan's JSON with Digest empty.
	Digest string `json:"digest"`
}

// Trigger is the event a plan was compiled for.
type Trigger struct {
	Event   string `json:"event"`
	Ref     string `json:"ref,omitempty"`
	Matched bool   `json:"matched"`
	// Reason explains the match or the miss in words a user can act on.
	Reason string `json:"reason"`
}

// Git is the repository state a run builds: the `git.*` context.
type Git struct {
	SHA          string   `json:"sha"`
	ShortSHA     string   `json:"short_sha"`
	Branch       string   `json:"branch"`
	Tag          string   `json:"tag"`
	Ref          string   `json:"ref"`
	Event        string   `json:"event"`
	Repo         string   `json:"repo"`
	Actor        string   `json:"actor"`
	PullRequest  int      `json:"pull_request"`
	BaseRef      string   `json:"base_ref"`
	ChangedFiles []string `json:"changed_files"`
}

// Secret tells a runner where to find a secret's value.
type Secret struct {
	Name string `json:"name"`
	Env  string `json:"env,omitempty"`
	File string `json:"file,omitempty"`
	// Withheld says why the secret is empty in this run whatever runners
	// have: the server withholds every secret from the run of a pull
	// request from a fork.
	Withheld string `json:"withheld,omitempty"`
}

// Schedule is when a pipeline runs by itself: a cron expression, and the
// branch whose head a scheduled run builds.
type Schedule struct {
	Cron   string `json:"cron"`
	Branch string `json:"branch"`
}

// Concurrency groups runs so that only one per group runs at a time.
type Concurrency struct {
	Group            string `json:"group"`
	CancelInProgress bool   `json:"cancel_in_progress"`
}

// Stage is one instance of a stage block: a matrix stage appears once per
// combination. Its steps run in order on one runner and share a workspace.
type Stage struct {
	// ID is unique in the plan: the stage name, plus the matrix values for a
	// matrix instance, as in `test[go=1.22]`.
	ID     string            `json:"id"`
	Name   string            `json:"name"`
	Matrix map[string]string `json:"matrix,omitempty"`
	// MatrixKeys gives the matrix dimensions in the order they were written.
	MatrixKeys []string `json:"matrix_keys,omitempty"`
	Needs      []string `json:"needs,omitempty"`
	// Skip is empty for a stage that runs, otherwise the reason it does not.
	Skip     string    `json:"skip,omitempty"`
	RunsOn   []string  `json:"runs_on,omitempty"`
	Approval *Approval `json:"approval,omitempty"`
	Timeout  Duration  `json:"timeout,omitempty"`
	// QueueTimeout bounds how long the stage waits for a runner with its
	// labels to take it; zero means the engine's default (1 h).
	QueueTimeout    Duration            `json:"queue_timeout,omitempty"`
	Retry           *Retry              `json:"retry,omitempty"`
	ContinueOnError bool                `json:"continue_on_error,omitempty"`
	Env             map[string]Template `json:"env,omitempty"`
	// Artifacts are patterns of workspace files that the stage hands to the
	// stages that need it, when it succeeds.
	Artifacts []string `json:"artifacts,omitempty"`
	Steps     []Step   `json:"steps"`
	// Source is where the stage block starts, relative to the pipeline
	// directory, for messages that point the user back at their file.
	Source string `json:"source"`
}

// Approval holds a stage until someone approves or rejects it.
type Approval struct {
	Approvers   []string `json:"approvers,omitempty"`
	Timeout     Duration `json:"timeout,omitempty"`
	Description string   `json:"description,omitempty"`
}

// Retry says how often and how patiently a failed step is tried again.
type Retry struct {
	Attempts int      `json:"attempts" hcl:"attempts"`
	Backoff  Duration `json:"backoff,omitempty" hcl:"backoff"`
	// MaxBackoff caps the exponential growth of Backoff.
	MaxBackoff Duration `json:"max_backoff,omitempty" hcl:"max_backoff"`
}

// Step is one step of a stage. Exactly one of the kind-specific fields is
// set, matching Kind.
type Step struct {
	Name            string              `json:"name"`
	Kind            string              `json:"kind"`
	Env             map[string]Template `json:"env,omitempty"`
	Timeout         Duration            `json:"timeout,omitempty"`
	Retry           *Retry              `json:"retry,omitempty"`
	ContinueOnError bool                `json:"continue_on_error,omitempty"`
	// Outputs lists the outputs the step produces, by name.
	Outputs []string `json:"outputs,omitempty"`
	// Refs lists every run-time value the step's attributes use, so an
	// engine can resolve them before it schedules the step.
	Refs   []Ref  `json:"refs,omitempty"`
	Source string `json:"source"`

	Run     *RunStep     `json:"run,omitempty"`
	Image   *ImageStep   `json:"image,omitempty"`
	Scan    *ScanStep    `json:"scan,omitempty"`
	Release *ReleaseStep `json:"release,omitempty"`
	ArgoCD  *ArgoCDStep  `json:"argocd,omitempty"`
	Verify  *VerifyStep  `json:"verify,omitempty"`
	Dagger  *DaggerStep  `json:"dagger,omitempty"`
}

// Seal fills in SchemaVersion and Digest. The digest covers everything else,
// so two plans with the same digest run the same way.
func (p *Plan) Seal() error {
	p.SchemaVersion = SchemaVersion
	p.Digest = ""
	h := sha256.New()
	if err := p.writeCompactJSON(h); err != nil {
		return fmt.Errorf("encoding plan: %w", err)
	}
	p.Digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return nil
}

// compactJSON is json.Marshal(p), byte for byte.
func (p *Plan) compactJSON() ([]byte, error) {
	var b bytes.Buffer
	err := p.writeCompactJSON(&b)
	return b.Bytes(), err
}

// writeCompactJSON writes json.Marshal(p), byte for byte, with the stages
// encoded in parallel: they are most of a large plan, which is written as
// it is put together, without a copy of the whole.
func (p *Plan) writeCompactJSON(w io.Writer) error {
	if len(p.Stages) < 64 {
		b, err := json.Marshal(p)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	parts := make([][]byte, len(p.Stages))
	errs := make([]error, len(p.Stages))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < len(p.Stages); i = int(next.Add(1) - 1) {
				parts[i], errs[i] = json.Marshal(&p.Stages[i])
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// The plan without stages encodes "stages":null exactly once, before
	// the digest: string values cannot hold it unescaped.
	shell := *p
	shell.Stages = nil
	head, err := json.Marshal(&shell)
	if err != nil {
		return err
	}
	const hole = `"stages":null,`
	i := bytes.Index(head, []byte(hole))
	if i < 0 {
		return errors.New("plan encoding has no stages field")
	}
	write := func(b []byte) {
		if err == nil {
			_, err = w.Write(b)
		}
	}
	write(head[:i])
	write([]byte(`"stages":[`))
	for k, part := range parts {
		if k > 0 {
			write([]byte{','})
		}
		write(part)
	}
	write([]byte(`],`))
	write(head[i+len(hole):])
	return err
}

// JSON renders the plan as indented JSON with a trailing newline. The same
// plan always gives the same bytes.
func (p *Plan) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding plan: %w", err)
	}
	return append(b, '\n'), nil
}

// Stage returns the stage instance with the given ID.
func (p *Plan) Stage(id string) (*Stage, bool) {
	for i := range p.Stages {
		if p.Stages[i].ID == id {
			return &p.Stages[i], true
		}
	}
	return nil, false
}

// Config returns the kind-specific configuration of the step.
func (s *Step) Config() any {
	switch s.Kind {
	case KindRun:
		return s.Run
	case KindImage:
		return s.Image
	case KindScan:
		return s.Scan
	case KindRelease:
		return s.Release
	case KindArgoCD:
		return s.ArgoCD
	case KindVerify:
		return s.Verify
	case KindDagger:
		return s.Dagger
	}
	return nil
}
