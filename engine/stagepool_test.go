package engine

import (
	"context"
	"testing"
	"time"

	"go.temporal.io/sdk/worker"
)

// reservation is the SDK's view of a poll, reduced to its queue.
type reservation struct {
	worker.SlotReservationInfo
	queue string
}

func (r reservation) TaskQueue() string { return r.queue }

type permitInfo struct {
	worker.SlotMarkUsedInfo
	p *worker.SlotPermit
}

func (i permitInfo) Permit() *worker.SlotPermit { return i.p }

type releaseInfo struct {
	worker.SlotReleaseInfo
	p *worker.SlotPermit
}

func (i releaseInfo) Permit() *worker.SlotPermit { return i.p }

// reserve reserves a slot for queue, failing if it would wait longer than d.
func reserve(t *testing.T, p *StagePool, queue string, d time.Duration) *worker.SlotPermit {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	pm, err := p.ReserveSlot(ctx, reservation{queue: queue})
	if err != nil {
		return nil
	}
	return pm
}

// Every stage queue of a runner is polled at once, and none is polled
// while the runner is full; a stage held until released counts.
func TestStagePool(t *testing.T) {
	p := NewStagePool(1)
	a := reserve(t, p, "sluice-stages", time.Second)
	b := reserve(t, p, "sluice-stages@gpu", time.Second)
	if a == nil || b == nil {
		t.Fatal("the runner's two queues are not both polled")
	}
	if reserve(t, p, "sluice-stages", 50*time.Millisecond) != nil {
		t.Fatal("a queue got a second poll")
	}
	// A task arrives on the first queue: a prepare that then holds the
	// stage.
	p.MarkSlotUsed(permitInfo{p: a})
	p.Hold(stageKey("run", "build"))
	p.ReleaseSlot(releaseInfo{p: a})
	if p.Busy() != 1 || p.Taken() != 1 {
		t.Fatalf("busy %d, taken %d; want 1, 1", p.Busy(), p.Taken())
	}
	// The other queue's poll comes back empty: with the runner full,
	// nothing is polled again.
	p.ReleaseSlot(releaseInfo{p: b})
	if reserve(t, p, "sluice-stages@gpu", 50*time.Millisecond) != nil {
		t.Fatal("a full runner polled for another stage")
	}
	// The stage ends: polling resumes.
	done := make(chan *worker.SlotPermit)
	go func() { done <- reserve(t, p, "sluice-stages@gpu", 5*time.Second) }()
	time.Sleep(20 * time.Millisecond)
	p.Release(stageKey("run", "build"))
	if <-done == nil {
		t.Fatal("no poll after the stage was released")
	}
	// Drained: nothing is polled, and Wait returns once nothing is held.
	p.Drain()
	if reserve(t, p, "sluice-stages", 50*time.Millisecond) != nil {
		t.Fatal("a drained runner polled")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := p.Wait(ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
}

// A stage run whole by one task (RunSteps taking it) counts while its
// task runs, and Wait waits for it.
func TestStagePoolWaitsForRunningTask(t *testing.T) {
	p := NewStagePool(2)
	pm := reserve(t, p, "q", time.Second)
	p.MarkSlotUsed(permitInfo{p: pm})
	p.Drain()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := p.Wait(ctx); err == nil {
		t.Fatal("Wait returned while a stage's task ran")
	}
	p.ReleaseSlot(releaseInfo{p: pm})
	if err := p.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}
