package githubfake

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"
)

// BlobSHA returns the object name git gives a file's content: the SHA-1 of
// "blob <len>\x00" followed by the content.
func BlobSHA(content []byte) string {
	return objectSHA("blob", content)
}

func objectSHA(kind string, body []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "%s %d\x00", kind, len(body))
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// Deleted, as a file's content in Commit, removes the file.
const Deleted = "\x00githubfake:deleted\x00"

// Git modes as the trees API shows them.
const (
	modeFile = "100644"
	modeTree = "040000"
)

// entry is one entry of a git tree.
type entry struct {
	name, mode, kind, sha string
	size                  int // blobs only
}

// commit is a git commit object of the fake.
type commit struct {
	sha, tree, message string
	parents            []string
	when               time.Time
	files              map[string]string // path -> blob SHA: the whole snapshot
}

// store holds one repository's git objects.
type store struct {
	blobs   map[string][]byte
	trees   map[string][]entry
	commits map[string]*commit
	order   []string // commit SHAs in creation order
}

func newStore() *store {
	return &store{blobs: map[string][]byte{}, trees: map[string][]entry{}, commits: map[string]*commit{}}
}

// fakeEpoch is the author date of the first commit; each later commit is a
// minute younger, so that object names are the same on every run.
var fakeEpoch = time.Date(2024, 1, 2, 3, 4, 0, 0, time.UTC)

const fakeIdent = "Sluice Test <test@sluice.invalid>"

// commit makes a commit on parent ("" for a root commit) that sets the
// files given (Deleted removes one) and returns it.
func (st *store) commit(parent string, changes map[string]string) (*commit, error) {
	return st.commitMessage(parent, "", changes)
}

// commitMessage is commit with a message ("" for "commit N").
func (st *store) commitMessage(parent, message string, changes map[string]string) (*commit, error) {
	files := map[string]string{}
	var parents []string
	if parent != "" {
		p, ok := st.commits[parent]
		if !ok {
			return nil, fmt.Errorf("no commit %s", parent)
		}
		for k, v := range p.files {
			files[k] = v
		}
		parents = []string{parent}
	}
	for path, content := range changes {
		if path == "" || strings.HasPrefix(path, "/") || strings.HasSuffix(path, "/") || strings.Contains(path, "//") {
			return nil, fmt.Errorf("bad file path %q", path)
		}
		if content == Deleted {
			delete(files, path)
			continue
		}
		sha := BlobSHA([]byte(content))
		st.blobs[sha] = []byte(content)
		files[path] = sha
	}
	tree := st.writeTree(files)
	n := len(st.order)
	when := fakeEpoch.Add(time.Duration(n) * time.Minute)
	msg := message
	if msg == "" {
		msg = fmt.Sprintf("commit %d", n+1)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "tree %s\n", tree)
	for _, p := range parents {
		fmt.Fprintf(&b, "parent %s\n", p)
	}
	fmt.Fprintf(&b, "author %s %d +0000\ncommitter %s %d +0000\n\n%s\n", fakeIdent, when.Unix(), fakeIdent, when.Unix(), msg)
	c := &commit{sha: objectSHA("commit", []byte(b.String())), tree: tree, message: msg, parents: parents, when: when, files: files}
	if _, dup := st.commits[c.sha]; !dup {
		st.commits[c.sha] = c
		st.order = append(st.order, c.sha)
	}
	return st.commits[c.sha], nil
}

// writeTree stores the trees of a snapshot and returns the root's SHA.
func (st *store) writeTree(files map[string]string) string {
	type dir struct {
		blobs map[string]string
		dirs  map[string]map[string]string
	}
	d := dir{blobs: map[string]string{}, dirs: map[string]map[string]string{}}
	for path, sha := range files {
		if first, rest, ok := strings.Cut(path, "/"); ok {
			if d.dirs[first] == nil {
				d.dirs[first] = map[string]string{}
			}
			d.dirs[first][rest] = sha
		} else {
			d.blobs[path] = sha
		}
	}
	var entries []entry
	for name, sha := range d.blobs {
		entries = append(entries, entry{name: name, mode: modeFile, kind: "blob", sha: sha, size: len(st.blobs[sha])})
	}
	for name, sub := range d.dirs {
		entries = append(entries, entry{name: name, mode: modeTree, kind: "tree", sha: st.writeTree(sub)})
	}
	// git sorts entries by name, a tree's name compared as if it ended
	// with "/".
	key := func(e entry) string {
		if e.kind == "tree" {
			return e.name + "/"
		}
		return e.name
	}
	sort.Slice(entries, func(i, j int) bool { return key(entries[i]) < key(entries[j]) })
	var body []byte
	for _, e := range entries {
		mode := strings.TrimPrefix(e.mode, "0") // git writes 40000
		raw, _ := hex.DecodeString(e.sha)
		body = append(body, mode+" "+e.name+"\x00"...)
		body = append(body, raw...)
	}
	sha := objectSHA("tree", body)
	st.trees[sha] = entries
	return sha
}

// listed is a tree entry with its path from the listed tree.
type listed struct {
	path string
	entry
}

// list returns a tree's entries, with every subtree's entries after it
// (as `git ls-tree -r -t`) when recursive.
func (st *store) list(tree string, recursive bool) []listed {
	var out []listed
	var walk func(prefix, sha string)
	walk = func(prefix, sha string) {
		for _, e := range st.trees[sha] {
			out = append(out, listed{prefix + e.name, e})
			if recursive && e.kind == "tree" {
				walk(prefix+e.name+"/", e.sha)
			}
		}
	}
	walk("", tree)
	return out
}

// ancestors returns the commits reachable from sha, itself included.
func (st *store) ancestors(sha string) map[string]bool {
	seen := map[string]bool{}
	stack := []string{sha}
	for len(stack) > 0 {
		s := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[s] {
			continue
		}
		seen[s] = true
		if c := st.commits[s]; c != nil {
			stack = append(stack, c.parents...)
		}
	}
	return seen
}

// mergeBase returns the youngest common ancestor of a and b, "" if none.
func (st *store) mergeBase(a, b string) string {
	inA := st.ancestors(a)
	best := ""
	for s := range st.ancestors(b) {
		if inA[s] && (best == "" || st.commits[s].when.After(st.commits[best].when)) {
			best = s
		}
	}
	return best
}

// between returns the commits reachable from head but not from base,
// oldest first.
func (st *store) between(base, head string) []*commit {
	skip := st.ancestors(base)
	var out []*commit
	for s := range st.ancestors(head) {
		if !skip[s] {
			out = append(out, st.commits[s])
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].when.Before(out[j].when) })
	return out
}

// change is one file of a diff.
type change struct {
	path, previous, status, sha string
	additions, deletions        int
}

// diff compares two snapshots as GitHub does: added, removed and modified
// files, an added file whose content a removed one had being a rename.
// It is sorted by path.
func (st *store) diff(from, to map[string]string) []change {
	var added, removed []string
	var out []change
	for path, sha := range to {
		old, ok := from[path]
		switch {
		case !ok:
			added = append(added, path)
		case old != sha:
			a, d := lineDiff(st.blobs[old], st.blobs[sha])
			out = append(out, change{path: path, status: "modified", sha: sha, additions: a, deletions: d})
		}
	}
	for path := range from {
		if _, ok := to[path]; !ok {
			removed = append(removed, path)
		}
	}
	sort.Strings(added)
	sort.Strings(removed)
	gone := map[string]bool{}
	for _, path := range added {
		sha := to[path]
		c := change{path: path, status: "added", sha: sha, additions: lines(st.blobs[sha])}
		for _, old := range removed {
			if !gone[old] && from[old] == sha {
				gone[old] = true
				c = change{path: path, previous: old, status: "renamed", sha: sha}
				break
			}
		}
		out = append(out, c)
	}
	for _, path := range removed {
		if !gone[path] {
			out = append(out, change{path: path, status: "removed", sha: from[path], deletions: lines(st.blobs[from[path]])})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out
}

func lines(b []byte) int {
	if len(b) == 0 {
		return 0
	}
	n := strings.Count(string(b), "\n")
	if b[len(b)-1] != '\n' {
		n++
	}
	return n
}

// lineDiff counts the lines only in a and only in b, as a rough
// stand-in for a real diff's deletions and additions.
func lineDiff(a, b []byte) (additions, deletions int) {
	count := map[string]int{}
	for _, l := range strings.SplitAfter(string(a), "\n") {
		if l != "" {
			count[l]++
		}
	}
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if l == "" {
			continue
		}
		if count[l] > 0 {
			count[l]--
		} else {
			additions++
		}
	}
	for _, n := range count {
		deletions += n
	}
	return additions, deletions
}
