package githubfake

import (
	"bytes"
	"compress/zlib"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ExportGit writes repository repo into a bare git repository at dir
// (made if missing) with every object under the names the fake gave them,
// its branches, and a ref per commit, so that a runner can clone the URL
// a webhook names (set repository.clone_url to dir) and check out any
// commit of the fake: GitHub serves git over HTTPS, which the fake does
// not. Call it again after new commits.
func (s *Server) ExportGit(repo, dir string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rp := s.repos[repo]
	if rp == nil {
		return fmt.Errorf("githubfake: no repository %s", repo)
	}
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); err != nil {
		out, err := exec.Command("git", "init", "--quiet", "--bare", dir).CombinedOutput()
		if err != nil {
			return fmt.Errorf("git init: %v: %s", err, out)
		}
		// Runners fetch commits by SHA.
		if out, err := exec.Command("git", "-C", dir, "config", "uploadpack.allowAnySHA1InWant", "true").CombinedOutput(); err != nil {
			return fmt.Errorf("git config: %v: %s", err, out)
		}
	}
	st := rp.git
	for sha, b := range st.blobs {
		if err := writeObject(dir, "blob", sha, b); err != nil {
			return err
		}
	}
	for sha, entries := range st.trees {
		if err := writeObject(dir, "tree", sha, treeBody(entries)); err != nil {
			return err
		}
	}
	for _, sha := range st.order {
		c := st.commits[sha]
		if err := writeObject(dir, "commit", sha, commitBody(c)); err != nil {
			return err
		}
		if err := writeRef(dir, "refs/sluice-fake/"+sha, sha); err != nil {
			return err
		}
	}
	for name, sha := range rp.branches {
		if err := writeRef(dir, "refs/heads/"+name, sha); err != nil {
			return err
		}
	}
	return nil
}

// treeBody is a tree object's body, as writeTree hashed it.
func treeBody(entries []entry) []byte {
	var body []byte
	for _, e := range entries {
		raw, _ := hex.DecodeString(e.sha)
		body = append(body, strings.TrimPrefix(e.mode, "0")+" "+e.name+"\x00"...)
		body = append(body, raw...)
	}
	return body
}

// commitBody is a commit object's body, as commit hashed it.
func commitBody(c *commit) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "tree %s\n", c.tree)
	for _, p := range c.parents {
		fmt.Fprintf(&b, "parent %s\n", p)
	}
	fmt.Fprintf(&b, "author %s %d +0000\ncommitter %s %d +0000\n\n%s\n", fakeIdent, c.when.Unix(), fakeIdent, c.when.Unix(), c.message)
	return []byte(b.String())
}

// writeObject writes a loose object, checking that its name is right.
func writeObject(dir, kind, sha string, body []byte) error {
	if got := objectSHA(kind, body); got != sha {
		return fmt.Errorf("githubfake: %s %s hashes to %s", kind, sha, got)
	}
	p := filepath.Join(dir, "objects", sha[:2], sha[2:])
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	var z bytes.Buffer
	w := zlib.NewWriter(&z)
	fmt.Fprintf(w, "%s %d\x00", kind, len(body))
	w.Write(body)
	if err := w.Close(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, z.Bytes(), 0o444)
}

func writeRef(dir, ref, sha string) error {
	p := filepath.Join(dir, filepath.FromSlash(ref))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, []byte(sha+"\n"), 0o644)
}
