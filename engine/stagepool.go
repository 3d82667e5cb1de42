package engine

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/worker"
)

// StagePool is how many stages a runner holds at once (--max-stages). It
// is the slot supplier of the workers that take stages: a worker polls
// for a stage only when the pool has room, so a busy runner leaves the
// stage to another one instead of taking it and making it wait. A stage
// is held from the moment its workspace is prepared until it is released
// (a stage's steps come on the runner's own queue meanwhile).
//
// Drain closes the pool: no more polls for stages, while the stages held
// finish.
type StagePool struct {
	max int

	mu sync.Mutex
	// polling counts, per stage queue, the reservations of polls waiting
	// for a task: one per queue, so that each of the runner's queues is
	// polled while it has room.
	polling map[string]int
	// used counts reservations whose task arrived and is running (a
	// prepare, or a stage run whole by RunSteps); taken counts every task
	// ever received.
	used, taken int
	held        map[string]time.Time // stage key -> last activity
	// running are the stages run whole by one task (counted by its slot),
	// for Stages.
	running map[string]bool
	closed  bool
	// blocked says why the runner takes no stage for now (its disk is
	// full); empty when it may.
	blocked string
	changed chan struct{}
}

// StaleStage is how long a held stage may see no activity (no step, no
// heartbeat through the pool) before the pool stops counting it: its run
// was terminated, or its release was lost.
const StaleStage = 15 * time.Minute

// NewStagePool returns a pool of max stages (at least 1).
func NewStagePool(n int) *StagePool {
	return &StagePool{max: max(n, 1), held: map[string]time.Time{}, polling: map[string]int{}, running: map[string]bool{}, changed: make(chan struct{})}
}

func (p *StagePool) notify() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// room says whether queue may be polled for a new stage; p.mu is held.
// Each queue has one poll at most, and polls only while the runner holds
// fewer stages than its maximum. (Two tasks arriving on two queues at one
// moment may take the runner one stage over; a runner that polls one
// queue never is.)
func (p *StagePool) room(queue string) bool {
	p.expire()
	return !p.closed && p.blocked == "" && p.polling[queue] == 0 && p.used+len(p.held) < p.max
}

// expire forgets held stages idle for StaleStage; p.mu is held.
func (p *StagePool) expire() {
	for k, t := range p.held {
		if time.Since(t) > StaleStage {
			delete(p.held, k)
		}
	}
}

// pollPermit is the UserData of a permit: its queue, and whether a task
// arrived on it.
type pollPermit struct {
	queue string
	used  bool
}

// ReserveSlot waits until the runner may poll info's queue for a stage.
func (p *StagePool) ReserveSlot(ctx context.Context, info worker.SlotReservationInfo) (*worker.SlotPermit, error) {
	q := info.TaskQueue()
	for {
		p.mu.Lock()
		if p.room(q) {
			p.polling[q]++
			p.mu.Unlock()
			return &worker.SlotPermit{UserData: &pollPermit{queue: q}}, nil
		}
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ch:
		case <-time.After(time.Minute): // stale stages expire
		}
	}
}

// TryReserveSlot reserves a slot if there is room.
func (p *StagePool) TryReserveSlot(info worker.SlotReservationInfo) *worker.SlotPermit {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := info.TaskQueue()
	if !p.room(q) {
		return nil
	}
	p.polling[q]++
	return &worker.SlotPermit{UserData: &pollPermit{queue: q}}
}

// MarkSlotUsed counts a task received on a stage queue.
func (p *StagePool) MarkSlotUsed(info worker.SlotMarkUsedInfo) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pp, ok := info.Permit().UserData.(*pollPermit); ok && !pp.used {
		pp.used = true
		p.polling[pp.queue]--
	}
	p.used++
	p.taken++
	p.notify()
}

// ReleaseSlot gives back a reservation (the prepare activity ended, or a
// poll came back empty).
func (p *StagePool) ReleaseSlot(info worker.SlotReleaseInfo) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pp, ok := info.Permit().UserData.(*pollPermit); ok {
		if pp.used {
			p.used--
		} else {
			p.polling[pp.queue]--
		}
	}
	p.notify()
}

// Taken returns how many tasks the runner has taken from stage queues.
func (p *StagePool) Taken() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.taken
}

// MaxSlots is the pool's size.
func (p *StagePool) MaxSlots() int { return p.max }

// Hold counts a stage whose workspace is ready, until Release.
func (p *StagePool) Hold(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.held[key] = time.Now()
	p.notify()
}

// Touch records activity of a held stage.
func (p *StagePool) Touch(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.held[key]; ok {
		p.held[key] = time.Now()
	}
}

// Release ends a stage.
func (p *StagePool) Release(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.held[key]; ok {
		delete(p.held, key)
		p.notify()
	}
}

// Busy returns how many stages the runner holds or is taking.
func (p *StagePool) Busy() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expire()
	return len(p.held) + p.used
}

// Drain closes the pool: the runner takes no more stages.
func (p *StagePool) Drain() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.notify()
}

// Wait waits until the runner holds no stage and runs no task of a stage
// queue, or ctx ends.
func (p *StagePool) Wait(ctx context.Context) error {
	for {
		p.mu.Lock()
		p.expire()
		idle := len(p.held) == 0 && p.used == 0
		ch := p.changed
		p.mu.Unlock()
		if idle {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		case <-time.After(time.Minute):
		}
	}
}

// WhenIdle calls fn each time the runner has held no stage for after: at
// start-up, and after each spell of work. It looks every second, and
// returns when ctx ends.
func (p *StagePool) WhenIdle(ctx context.Context, after time.Duration, fn func()) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	idleSince, done := time.Now(), false
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			switch {
			case p.Busy() > 0:
				idleSince, done = now, false
			case !done && now.Sub(idleSince) >= after:
				fn()
				done = true
			}
		}
	}
}

// Changed returns a channel closed at the pool's next change.
func (p *StagePool) Changed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

func stageKey(run, stage string) string { return run + "\x00" + stage }

// Running records a stage run whole by the task of a stage queue, whose
// slot already counts it, until the returned func is called.
func (p *StagePool) Running(key string) (done func()) {
	p.mu.Lock()
	p.running[key] = true
	p.notify()
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		delete(p.running, key)
		p.notify()
		p.mu.Unlock()
	}
}

// Stages lists the stages the runner holds, as RUN/STAGE.
func (p *StagePool) Stages() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	keys := map[string]bool{}
	for k := range p.held {
		keys[k] = true
	}
	for k := range p.running {
		keys[k] = true
	}
	out := make([]string, 0, len(keys))
	for k := range keys {
		run, stage, _ := strings.Cut(k, "\x00")
		out = append(out, run+"/"+stage)
	}
	sort.Strings(out)
	return out
}

// Draining says whether Drain was called.
func (p *StagePool) Draining() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// Block stops the runner taking stages, saying why ("" lets it again); it
// reports whether that changed anything.
func (p *StagePool) Block(why string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.blocked == why {
		return false
	}
	p.blocked = why
	p.notify()
	return true
}

// Blocked says why the runner takes no stage for now, if it does not.
func (p *StagePool) Blocked() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.blocked
}
