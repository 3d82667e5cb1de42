package dsl

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
)

// LockFileName is the file beside the pipeline files that records the
// commit of every git module source, so that every compile of the
// pipeline, on any machine, uses the same module code.
const LockFileName = "modules.lock.hcl"

// LockMode says how a compile uses the lock file.
type LockMode int

const (
	// LockRead uses the commits the lock file records and refuses a git
	// source it does not record: plan, run and the server.
	LockRead LockMode = iota
	// LockCheck asks each git source's repository what its ref names now,
	// refuses a ref that moved since it was locked, and records new
	// sources: sluice validate.
	LockCheck
	// LockUpdate records what every ref names now, moved or not: sluice
	// validate --update-modules.
	LockUpdate
)

type lockKey struct{ url, ref string }

type lockEntry struct {
	commit string
	rng    hcl.Range
}

// moduleLock is the lock file as read, and the commits a compile used.
type moduleLock struct {
	mode    LockMode
	path    string // the file
	display string // the file as messages name it
	read    map[lockKey]lockEntry
	used    map[lockKey]string
	loaded  bool
}

var lockSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "git", LabelNames: []string{"url", "ref"}}}}

var lockEntrySchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "commit", Required: true}}}

// lock returns the lock of the compilation, reading the file the first
// time a git source needs it. Its problems are the pipeline's.
func (g *graph) lock(c *compiler) *moduleLock {
	l := g.src.lock
	if l == nil {
		l = newModuleLock(g.src, g.opts.Modules.Lock)
		g.src.lock = l
	}
	if l.loaded {
		return l
	}
	l.loaded = true
	if l.mode == LockUpdate {
		return l // rewritten whatever it says
	}
	b, err := os.ReadFile(l.path)
	if errors.Is(err, fs.ErrNotExist) {
		return l
	}
	root := c
	for root.mod != nil {
		root = root.mod.parent
	}
	if err != nil {
		root.add(errorDiag("Cannot read lock file", fmt.Sprintf("Reading %s: %s.", l.display, errText(err)), nil, nil))
		return l
	}
	f, diags := Parse(b, l.path)
	g.src.Files[l.path] = f
	root.add(diags...)
	if diags.HasErrors() {
		return l
	}
	content, diags := f.Body.Content(lockSchema)
	root.add(diags...)
	for _, b := range content.Blocks {
		ec, diags := b.Body.Content(lockEntrySchema)
		root.add(diags...)
		attr, ok := ec.Attributes["commit"]
		if !ok {
			continue
		}
		commit, lit := literalString(attr.Expr)
		if !lit || !fullSHA.MatchString(commit) {
			root.add(errorDiag("Invalid lock file", fmt.Sprintf("commit is a full commit SHA, like %q. The lock file is written by sluice validate; run sluice validate --update-modules to rewrite it.", "0123456789abcdef0123456789abcdef01234567"), attr.Expr.Range().Ptr(), &b.DefRange))
			continue
		}
		key := lockKey{url: b.Labels[0], ref: b.Labels[1]}
		if prev, dup := l.read[key]; dup {
			root.add(errorDiag("Invalid lock file", fmt.Sprintf("%s at %s is already locked at line %d. Run sluice validate --update-modules to rewrite the file.", key.url, key.ref, prev.rng.Start.Line), &b.DefRange, nil))
			continue
		}
		l.read[key] = lockEntry{commit: commit, rng: b.DefRange}
	}
	return l
}

func newModuleLock(src *Sources, mode LockMode) *moduleLock {
	p := filepath.Join(src.Dir, LockFileName)
	return &moduleLock{mode: mode, path: p, display: p, read: map[lockKey]lockEntry{}, used: map[lockKey]string{}}
}

// encode renders the lock file for the commits used.
func (l *moduleLock) encode() []byte {
	keys := make([]lockKey, 0, len(l.used))
	for k := range l.used {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].url != keys[j].url {
			return keys[i].url < keys[j].url
		}
		return keys[i].ref < keys[j].ref
	})
	f := hclwrite.NewEmptyFile()
	body := f.Body()
	for i, k := range keys {
		if i > 0 {
			body.AppendNewline()
		}
		b := body.AppendNewBlock("git", []string{k.url, k.ref})
		b.Body().SetAttributeValue("commit", cty.StringVal(l.used[k]))
	}
	var out bytes.Buffer
	out.WriteString("# The commit of every git module source of this pipeline, written by\n")
	out.WriteString("# sluice validate. Commit this file with the pipeline: every compile uses\n")
	out.WriteString("# exactly these commits. sluice validate --update-modules records what the\n")
	out.WriteString("# refs name now.\n\n")
	out.Write(hclwrite.Format(f.Bytes()))
	return out.Bytes()
}

// WriteModuleLock writes the lock file of the pipeline that src was
// loaded from with the commits its last Compile found, when that compile
// checked or updated the lock (LockCheck, LockUpdate). It leaves a file
// that already says that alone, and removes the file when no git source is
// left. It reports the file and whether it changed it.
func (s *Sources) WriteModuleLock() (string, bool, error) {
	l := s.lock
	if l == nil || l.mode == LockRead {
		return "", false, nil
	}
	old, err := os.ReadFile(l.path)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return l.path, false, fmt.Errorf("reading %s: %w", l.path, err)
	}
	if len(l.used) == 0 {
		if !exists {
			return l.path, false, nil
		}
		if err := os.Remove(l.path); err != nil {
			return l.path, false, fmt.Errorf("removing %s, which no module needs: %w", l.path, err)
		}
		return l.path, true, nil
	}
	b := l.encode()
	if bytes.Equal(old, b) {
		return l.path, false, nil
	}
	tmp := l.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return l.path, false, fmt.Errorf("writing %s: %w", l.path, err)
	}
	if err := os.Rename(tmp, l.path); err != nil {
		os.Remove(tmp)
		return l.path, false, fmt.Errorf("writing %s: %w", l.path, err)
	}
	return l.path, true, nil
}

// LockedModules is the number of git module sources the last Compile of
// src used.
func (s *Sources) LockedModules() int {
	if s.lock == nil {
		return 0
	}
	return len(s.lock.used)
}
