package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/engine"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]uint64{"2GiB": 2 << 30, "500MB": 500e6, "10g": 10 << 30, "0": 0, "1.5 KiB": 1536, "123": 123} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := parseSize("lots"); err == nil || !strings.Contains(err.Error(), "like 2GiB") {
		t.Errorf("parseSize(lots): %v", err)
	}
}

// A runner whose work dir's disk has less free than its minimum takes no
// stage and says why; with room again it takes stages.
func TestWatchDiskBlocks(t *testing.T) {
	var out bytes.Buffer
	e := &env{stdout: &out}
	pool := engine.NewStagePool(1)
	dir := t.TempDir()
	free, err := diskFree(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { watchDisk(ctx, e, pool, dir, free*4+(1<<40), time.Hour); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for pool.Blocked() == "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if why := pool.Blocked(); !strings.Contains(why, "under --min-free-disk") {
		t.Fatalf("the pool is not blocked for the disk: %q", why)
	}
	if !strings.Contains(out.String(), "Taking no stages: only ") {
		t.Errorf("the runner did not say why it takes no stages:\n%s", out.String())
	}
	// Room again (a minimum of one byte): it takes stages.
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	watchDisk(ctx2, e, pool, dir, 1, time.Hour)
	if why := pool.Blocked(); why != "" || !strings.Contains(out.String(), "Taking stages again") {
		t.Errorf("with room the pool is still blocked (%q):\n%s", why, out.String())
	}
}
