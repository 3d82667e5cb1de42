package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-ci/sluice/engine"
)

// parseSize reads a size like 2GiB, 500MB, 10G or a number of bytes.
func parseSize(s string) (uint64, error) {
	t := strings.TrimSpace(strings.ToUpper(s))
	units := []struct {
		suffix string
		mult   uint64
	}{{"TIB", 1 << 40}, {"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10}, {"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}}
	mult := uint64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("%q is not a size: write it like 2GiB, 500MB or 0", s)
	}
	return uint64(f * float64(mult)), nil
}

func humanSize(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", b)
}

// watchDisk keeps the runner from taking stages while the work dir's file
// system has less than min free, saying so when that changes, until ctx
// ends. min 0 watches nothing.
func watchDisk(ctx context.Context, e *env, pool *engine.StagePool, dir string, min uint64, every time.Duration) {
	if min == 0 {
		return
	}
	check := func() {
		free, err := diskFree(dir)
		if err != nil {
			return
		}
		why := ""
		if free < min {
			why = fmt.Sprintf("only %s free in %s, under --min-free-disk %s", humanSize(free), dir, humanSize(min))
		}
		if pool.Block(why) {
			if why != "" {
				fmt.Fprintf(e.stdout, "Taking no stages: %s. Free space there (caches stay; workspaces go when their stages end).\n", why)
			} else {
				fmt.Fprintf(e.stdout, "Taking stages again: %s free in %s.\n", humanSize(free), dir)
			}
		}
	}
	check()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			check()
		}
	}
}
