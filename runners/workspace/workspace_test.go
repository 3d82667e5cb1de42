package workspace

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// hermeticGit keeps the machine's git configuration out of the tests.
func hermeticGit(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	global := filepath.Join(t.TempDir(), "gitconfig")
	if err := os.WriteFile(global, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"GIT_CONFIG_NOSYSTEM": "1",
		"GIT_CONFIG_GLOBAL":   global,
		"GIT_AUTHOR_NAME":     "Test",
		"GIT_AUTHOR_EMAIL":    "test@example.com",
		"GIT_COMMITTER_NAME":  "Test",
		"GIT_COMMITTER_EMAIL": "test@example.com",
	} {
		t.Setenv(k, v)
	}
}

func run(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimRight(string(out), "\n")
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// testRepo is a repository with two commits and a dirty working tree.
type testRepo struct {
	dir        string
	c1, c2     string // the commits
	root       string // the workspaces' root
	wantDirty  map[string]string
	wantCommit map[string]map[string]string
}

func newTestRepo(t *testing.T) testRepo {
	t.Helper()
	hermeticGit(t)
	dir := t.TempDir()
	run(t, dir, "init", "--quiet", "--initial-branch=main")
	write(t, filepath.Join(dir, "a.txt"), "one\n")
	write(t, filepath.Join(dir, "b.txt"), "bee\n")
	write(t, filepath.Join(dir, "sub", "dir", "c.txt"), "sea\n")
	write(t, filepath.Join(dir, "run.sh"), "#!/bin/sh\necho hi\n")
	os.Chmod(filepath.Join(dir, "run.sh"), 0o755)
	os.Symlink("a.txt", filepath.Join(dir, "link"))
	write(t, filepath.Join(dir, ".gitignore"), "ignored/\n*.log\n")
	run(t, dir, "add", "-A")
	run(t, dir, "commit", "--quiet", "-m", "first")
	c1 := run(t, dir, "rev-parse", "HEAD")
	write(t, filepath.Join(dir, "a.txt"), "two\n")
	run(t, dir, "commit", "--quiet", "-am", "second")
	c2 := run(t, dir, "rev-parse", "HEAD")

	// Uncommitted work: a change, an untracked file, ignored files and a
	// deleted file.
	write(t, filepath.Join(dir, "a.txt"), "three, not committed\n")
	write(t, filepath.Join(dir, "new.txt"), "untracked\n")
	write(t, filepath.Join(dir, "ignored", "secret.txt"), "ignored\n")
	write(t, filepath.Join(dir, "build.log"), "ignored too\n")
	os.Remove(filepath.Join(dir, "b.txt"))

	common := map[string]string{
		".gitignore":    "ignored/\n*.log\n",
		"b.txt":         "bee\n",
		"sub/dir/c.txt": "sea\n",
		"run.sh":        "#!/bin/sh\necho hi\n",
		"link":          "-> a.txt",
	}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range common {
			m[k] = v
		}
		for k, v := range extra {
			if v == "" {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}
	return testRepo{
		dir:  dir,
		c1:   c1,
		c2:   c2,
		root: filepath.Join(t.TempDir(), "workspaces"),
		wantCommit: map[string]map[string]string{
			c1: with(map[string]string{"a.txt": "one\n"}),
			c2: with(map[string]string{"a.txt": "two\n"}),
		},
		wantDirty: with(map[string]string{"a.txt": "three, not committed\n", "new.txt": "untracked\n", "b.txt": ""}),
	}
}

// files lists the files of a directory, outside .git, with their content
// (or "-> target" for a symbolic link).
func files(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Name() == ".git" {
			return filepath.SkipDir
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if d.Type()&os.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			got[filepath.ToSlash(rel)] = "-> " + target
			return err
		}
		b, err := os.ReadFile(p)
		got[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestPrepare(t *testing.T) {
	repo := newTestRepo(t)
	for _, tc := range []struct {
		name  string
		opts  Options
		want  map[string]string
		head  string
		state string // git status --porcelain in the workspace
	}{
		{
			name: "first commit",
			opts: Options{SHA: repo.c1},
			want: repo.wantCommit[repo.c1],
			head: repo.c1,
		},
		{
			name: "abbreviated SHA",
			opts: Options{SHA: repo.c2[:10]},
			want: repo.wantCommit[repo.c2],
			head: repo.c2,
		},
		{
			name: "HEAD when no SHA is given",
			want: repo.wantCommit[repo.c2],
			head: repo.c2,
		},
		{
			name: "from a subdirectory of the repository",
			opts: Options{SHA: repo.c1, Repo: filepath.Join(repo.dir, "sub", "dir")},
			want: repo.wantCommit[repo.c1],
			head: repo.c1,
		},
		{
			name:  "dirty",
			opts:  Options{Dirty: true},
			want:  repo.wantDirty,
			head:  repo.c2,
			state: " M a.txt\n D b.txt\n?? new.txt",
		},
		{
			name:  "dirty against another commit",
			opts:  Options{Dirty: true, SHA: repo.c1},
			want:  repo.wantDirty,
			head:  repo.c1,
			state: " M a.txt\n D b.txt\n?? new.txt",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			opts.Root = repo.root
			opts.Run = "run-1"
			opts.Stage = tc.name
			if opts.Repo == "" {
				opts.Repo = repo.dir
			}
			dir, err := Prepare(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := Dir(repo.root, "run-1", tc.name)
			if dir != want || !filepath.IsAbs(dir) {
				t.Errorf("Prepare returned %q, want %q", dir, want)
			}
			if diff := cmp.Diff(tc.want, files(t, dir)); diff != "" {
				t.Errorf("workspace files (-want +got):\n%s", diff)
			}
			fi, err := os.Stat(filepath.Join(dir, "run.sh"))
			if err != nil || fi.Mode()&0o100 == 0 {
				t.Errorf("run.sh lost its executable bit: %v %v", fi.Mode(), err)
			}
			if head := run(t, dir, "rev-parse", "HEAD"); head != tc.head {
				t.Errorf("HEAD = %s, want %s", head, tc.head)
			}
			if state := run(t, dir, "status", "--porcelain"); state != tc.state {
				t.Errorf("git status:\n%s\nwant:\n%s", state, tc.state)
			}
			if _, err := exec.Command("git", "-C", dir, "symbolic-ref", "-q", "HEAD").Output(); err == nil {
				t.Error("HEAD is on a branch, want it detached")
			}
		})
	}
	// The source repository is untouched.
	if got := run(t, repo.dir, "status", "--porcelain"); got != " M a.txt\n D b.txt\n?? new.txt" {
		t.Errorf("the repository changed:\n%s", got)
	}
}

func TestPrepareErrors(t *testing.T) {
	repo := newTestRepo(t)
	empty := t.TempDir()
	run(t, empty, "init", "--quiet")
	plain := t.TempDir()
	for _, tc := range []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{
			name:    "repository without commits",
			opts:    Options{Repo: empty},
			wantErr: "has no commits; commit first or use --dirty",
		},
		{
			name:    "repository without commits and a SHA",
			opts:    Options{Repo: empty, SHA: repo.c1},
			wantErr: "has no commits; commit first or use --dirty",
		},
		{
			name:    "not a repository",
			opts:    Options{Repo: plain},
			wantErr: "is not in a git repository; run in a repository or use --dirty",
		},
		{
			name:    "unknown commit",
			opts:    Options{Repo: repo.dir, SHA: "0123456789abcdef0123456789abcdef01234567"},
			wantErr: `commit "0123456789abcdef0123456789abcdef01234567" is not in repository`,
		},
		{
			name:    "not a SHA",
			opts:    Options{Repo: repo.dir, SHA: "--upload-pack=touch /tmp/x"},
			wantErr: `"--upload-pack=touch /tmp/x" is not a commit SHA`,
		},
		{
			name:    "missing repository",
			opts:    Options{Repo: filepath.Join(plain, "nope")},
			wantErr: "no such file or directory",
		},
		{
			name:    "no repository",
			opts:    Options{},
			wantErr: "no repository given",
		},
		{
			name:    "dirty with an unknown commit",
			opts:    Options{Repo: repo.dir, Dirty: true, SHA: "abcdef12"},
			wantErr: `commit "abcdef12" is not in repository`,
		},
		{
			name:    "no root",
			opts:    Options{Repo: repo.dir, Root: "-"},
			wantErr: "no workspace root given",
		},
		{
			name:    "no stage",
			opts:    Options{Repo: repo.dir, Stage: "-"},
			wantErr: "run and stage must both be set",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			root := t.TempDir()
			opts.Root, opts.Run, opts.Stage = root, "run", "stage"
			if tc.opts.Root == "-" {
				opts.Root = ""
			}
			if tc.opts.Stage == "-" {
				opts.Stage = ""
			}
			dir, err := Prepare(context.Background(), opts)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Prepare = %q, %v; want an error containing %q", dir, err, tc.wantErr)
			}
			// Nothing is left behind but the run's directory and lock.
			var left []string
			filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
				if !d.IsDir() && !strings.HasSuffix(p, ".lock") {
					left = append(left, p)
				}
				if strings.Contains(p, ".tmp-") {
					left = append(left, p)
				}
				return nil
			})
			if len(left) > 0 {
				t.Errorf("a failed Prepare left %v", left)
			}
		})
	}
}

func TestPrepareDirtyWithoutCommits(t *testing.T) {
	hermeticGit(t)
	src := t.TempDir()
	run(t, src, "init", "--quiet")
	write(t, filepath.Join(src, ".gitignore"), "node_modules/\n")
	write(t, filepath.Join(src, "main.go"), "package main\n")
	write(t, filepath.Join(src, "node_modules", "x", "index.js"), "x\n")
	dir, err := Prepare(context.Background(), Options{Root: t.TempDir(), Run: "r", Stage: "s", Repo: src, Dirty: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{".gitignore": "node_modules/\n", "main.go": "package main\n"}
	if diff := cmp.Diff(want, files(t, dir)); diff != "" {
		t.Errorf("workspace files (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(filepath.Join(dir, ".git")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a workspace of a repository without commits has a .git: %v", err)
	}
}

func TestPrepareDirtyPlainDirectory(t *testing.T) {
	src := t.TempDir()
	write(t, filepath.Join(src, "main.go"), "package main\n")
	write(t, filepath.Join(src, "deep", "er", "file"), "content\n")
	os.Symlink("main.go", filepath.Join(src, "link"))
	// The workspaces' root inside the copied directory is not copied into
	// itself.
	root := filepath.Join(src, ".sluice", "workspaces")
	dir, err := Prepare(context.Background(), Options{Root: root, Run: "r", Stage: "s", Repo: src, Dirty: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"main.go": "package main\n", "deep/er/file": "content\n", "link": "-> main.go"}
	if diff := cmp.Diff(want, files(t, dir)); diff != "" {
		t.Errorf("workspace files (-want +got):\n%s", diff)
	}
	// Preparing again does not copy the first workspace into the second.
	dir, err = Prepare(context.Background(), Options{Root: root, Run: "r", Stage: "s2", Repo: src, Dirty: true})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, files(t, dir)); diff != "" {
		t.Errorf("second workspace files (-want +got):\n%s", diff)
	}
}

func TestPrepareAgain(t *testing.T) {
	repo := newTestRepo(t)
	opts := Options{Root: repo.root, Run: "run-1", Stage: "build", Repo: repo.dir, SHA: repo.c1}
	dir, err := Prepare(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	// A crashed attempt left build output, a read-only directory and a
	// half-made temporary workspace.
	write(t, filepath.Join(dir, "bin", "app"), "binary\n")
	write(t, filepath.Join(dir, "a.txt"), "changed by a step\n")
	write(t, filepath.Join(dir, "modcache", "pkg", "file.go"), "package pkg\n")
	os.Chmod(filepath.Join(dir, "modcache", "pkg"), 0o555)
	os.Chmod(filepath.Join(dir, "modcache"), 0o555)
	stale := filepath.Join(filepath.Dir(dir), ".build.tmp-12345")
	write(t, filepath.Join(stale, "half"), "x")

	again, err := Prepare(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if again != dir {
		t.Errorf("second Prepare returned %q, want %q", again, dir)
	}
	if diff := cmp.Diff(repo.wantCommit[repo.c1], files(t, dir)); diff != "" {
		t.Errorf("workspace files after a second Prepare (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temporary workspace not removed: %v", err)
	}

	// Another commit for the same stage replaces the workspace.
	opts.SHA = repo.c2
	if _, err := Prepare(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	if got := files(t, dir)["a.txt"]; got != "two\n" {
		t.Errorf("a.txt = %q after preparing the second commit", got)
	}
}

func TestPrepareConcurrent(t *testing.T) {
	repo := newTestRepo(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Half prepare the same stage, half a stage each.
			stage := "same"
			if i%2 == 1 {
				stage = "test[go=1.2" + string(rune('0'+i)) + ",os=linux]"
			}
			_, err := Prepare(context.Background(), Options{Root: repo.root, Run: "r", Stage: stage, Repo: repo.dir, SHA: repo.c2})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(filepath.Join(repo.root, "r"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
			if diff := cmp.Diff(repo.wantCommit[repo.c2], files(t, filepath.Join(repo.root, "r", e.Name()))); diff != "" {
				t.Errorf("%s (-want +got):\n%s", e.Name(), diff)
			}
		}
	}
	sort.Strings(names)
	want := []string{"same", "test%5Bgo%3D1.21%2Cos%3Dlinux%5D", "test%5Bgo%3D1.23%2Cos%3Dlinux%5D", "test%5Bgo%3D1.25%2Cos%3Dlinux%5D", "test%5Bgo%3D1.27%2Cos%3Dlinux%5D"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("workspaces (-want +got):\n%s", diff)
	}
}

func TestPrepareCancelled(t *testing.T) {
	repo := newTestRepo(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, dirty := range []bool{false, true} {
		_, err := Prepare(ctx, Options{Root: repo.root, Run: "r", Stage: "s", Repo: repo.dir, Dirty: dirty})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("dirty=%v: err = %v, want context.Canceled", dirty, err)
		}
	}
}

func TestRemove(t *testing.T) {
	repo := newTestRepo(t)
	a, err := Prepare(context.Background(), Options{Root: repo.root, Run: "r", Stage: "a", Repo: repo.dir})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Prepare(context.Background(), Options{Root: repo.root, Run: "r", Stage: "b", Repo: repo.dir})
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(a, "sub", "dir"), 0o500)
	os.Chmod(filepath.Join(a, "sub"), 0o500)
	if err := Remove(a); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(a); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("workspace still there: %v", err)
	}
	if _, err := os.Stat(b); err != nil {
		t.Errorf("removing one workspace touched another: %v", err)
	}
	if err := Remove(a); err != nil {
		t.Errorf("removing twice: %v", err)
	}
	if err := Remove(b); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(repo.root, "r")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the run's directory outlived its last workspace: %v", err)
	}
	if err := Remove(""); err == nil {
		t.Error("Remove(\"\"): no error")
	}
}

func TestDir(t *testing.T) {
	a, _ := Dir("/ws", "run", "test[go=1.22]")
	b, _ := Dir("/ws", "run", "test[go=1.23]")
	c, _ := Dir("/ws", "..", "../../etc")
	if a == b {
		t.Errorf("two stages share %q", a)
	}
	for _, d := range []string{a, b, c} {
		if !strings.HasPrefix(d, "/ws/") || strings.Count(d, "/") != 3 {
			t.Errorf("Dir gave %q, want a directory two levels under /ws", d)
		}
	}
}

// TestPrepareReuse checks that a workspace prepared again with Reuse keeps
// what the steps before the crash left in it.
func TestPrepareReuse(t *testing.T) {
	r := newTestRepo(t)
	opts := Options{Root: t.TempDir(), Run: "r1", Stage: "build", Repo: r.dir}
	dir, err := Prepare(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "built.bin"), "x")
	journal := Journal(dir)
	if filepath.Dir(journal) != filepath.Dir(dir) || strings.HasPrefix(journal, dir+"/") {
		t.Errorf("Journal(%q) = %q; want a file beside the workspace", dir, journal)
	}
	write(t, journal, "step\n")
	opts.Reuse = true
	again, err := Prepare(context.Background(), opts)
	if err != nil || again != dir {
		t.Fatalf("Prepare again = %q, %v; want %q", again, err, dir)
	}
	for _, f := range []string{filepath.Join(dir, "built.bin"), journal} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("the reused workspace lost %s: %v", f, err)
		}
	}
	opts.Reuse = false
	if _, err := Prepare(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "built.bin")); err == nil {
		t.Error("without Reuse the workspace was not recreated")
	}
	if _, err := os.Stat(journal); err == nil {
		t.Error("a workspace made anew kept the journal of the old one")
	}
	write(t, journal, "step\n")
	if err := Remove(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(journal); err == nil {
		t.Error("Remove left the workspace's journal behind")
	}
}

// A workspace of a full SHA shares its repository's objects and is made
// without cloning, from a working tree (its top or a directory in it), a
// bare repository and a linked worktree alike: the commit's files, HEAD
// detached at it, nothing to commit, the tags (git describe works) and the
// branches as origin's.
func TestPrepareShared(t *testing.T) {
	r := newTestRepo(t)
	run(t, r.dir, "tag", "-a", "-m", "release", "v1.0.0", r.c1)
	run(t, r.dir, "tag", "light", r.c2)
	bare := filepath.Join(t.TempDir(), "bare.git")
	run(t, r.dir, "clone", "--quiet", "--bare", r.dir, bare)
	run(t, bare, "pack-refs", "--all")
	linked := filepath.Join(t.TempDir(), "linked")
	run(t, r.dir, "worktree", "add", "--quiet", "--detach", linked, r.c2)

	for name, repo := range map[string]string{"top": r.dir, "subdir": filepath.Join(r.dir, "sub", "dir"), "bare": bare, "worktree": linked} {
		t.Run(name, func(t *testing.T) {
			dir, err := Prepare(context.Background(), Options{Root: r.root, Run: "shared-" + name, Stage: "s", Repo: repo, SHA: r.c1})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(r.wantCommit[r.c1], files(t, dir)); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
			if head := run(t, dir, "rev-parse", "HEAD"); head != r.c1 {
				t.Errorf("HEAD = %s, want %s", head, r.c1)
			}
			if st := run(t, dir, "status", "--porcelain"); st != "" {
				t.Errorf("git status says the workspace changed:\n%s", st)
			}
			if d := run(t, dir, "describe", "--tags"); d != "v1.0.0" {
				t.Errorf("git describe --tags = %q, want v1.0.0", d)
			}
			if tags := run(t, dir, "tag", "--list"); tags != "light\nv1.0.0" {
				t.Errorf("tags = %q", tags)
			}
			if br := run(t, dir, "branch", "-r", "--format=%(refname:short)"); !strings.Contains(br, "origin/main") {
				t.Errorf("remote branches = %q, want origin/main", br)
			}
			// Shared, not copied: the objects are the repository's.
			alt, err := os.ReadFile(filepath.Join(dir, ".git", "objects", "info", "alternates"))
			if err != nil || !strings.HasSuffix(strings.TrimSpace(string(alt)), "objects") {
				t.Errorf("alternates = %q, %v", alt, err)
			}
			// Made directly: a clone would have copied git's hook templates.
			if _, err := os.Stat(filepath.Join(dir, ".git", "hooks")); err == nil {
				t.Errorf("the workspace was cloned, not made directly")
			}
		})
	}
}
