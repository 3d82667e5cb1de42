// Package browsertest starts headless Chromium (Debian's chromium, which
// `make deps` installs) for the web view's tests and drives it with
// chromedp. Each test gets its own browser with an empty profile.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"
)

// Path finds the Chromium binary: $SLUICE_CHROMIUM, or chromium on PATH.
func Path() (string, error) {
	if p := os.Getenv("SLUICE_CHROMIUM"); p != "" {
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// Flags are the switches Chromium runs with: headless, no sandbox (the
// tests run as root in CI), and nothing that talks to the network on its
// own.
var Flags = []string{
	"headless", "no-sandbox", "disable-gpu", "disable-background-networking",
	"disable-component-update", "disable-sync", "no-first-run",
	"disable-dev-shm-usage", "no-default-browser-check", "mute-audio",
}

// New starts a browser for t and returns a context of its first tab; the
// browser stops when t ends. A missing Chromium fails the test with how to
// install it: the web view's tests are not optional.
func New(t testing.TB) context.Context {
	t.Helper()
	path, err := Path()
	if err != nil {
		t.Fatalf("no Chromium: install it with `make deps` (apt-get install -y chromium) or set SLUICE_CHROMIUM")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "profile")),
		chromedp.WindowSize(1280, 900),
	}
	for _, f := range Flags {
		opts = append(opts, chromedp.Flag(f, true))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	// Start the browser now, so that a test's first step does not carry
	// its start-up in its timing. (No timeout on this first call: it
	// would stop the browser when it ends.)
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("starting Chromium %s: %v", path, err)
	}
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	return ctx
}
