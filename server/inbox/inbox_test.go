package inbox

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func open(t *testing.T, dir string, opts Options) *Inbox {
	t.Helper()
	b, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// ids are the IDs still pending in dir, oldest first, as a new Open reads
// them.
func pendingIDs(t *testing.T, dir string) []string {
	t.Helper()
	b, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var ids []string
	for _, e := range b.queue {
		ids = append(ids, e.ID)
	}
	return ids
}

// collector forwards into a list, failing the IDs in fail that many times.
type collector struct {
	mu   sync.Mutex
	got  []string
	body map[string]string
	fail map[string]int
	seen chan string
}

func newCollector() *collector {
	return &collector{body: map[string]string{}, fail: map[string]int{}, seen: make(chan string, 1000)}
}

func (c *collector) forward(id string, payload []byte, _ time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail[id] > 0 {
		c.fail[id]--
		return errors.New("temporal is unavailable")
	}
	c.got = append(c.got, id)
	c.body[id] = string(payload)
	c.seen <- id
	return nil
}

func (c *collector) wait(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for range n {
		select {
		case <-c.seen:
		case <-deadline:
			t.Fatalf("forwarded %d of %d deliveries", len(c.got), n)
		}
	}
}

func TestPutForwardsOnceAndRemembers(t *testing.T) {
	dir := t.TempDir()
	b := open(t, dir, Options{})
	c := newCollector()
	go b.Run(2, c.forward)
	for i := range 5 {
		dup, err := b.Put(fmt.Sprint("d", i), []byte(fmt.Sprint("payload ", i)))
		if err != nil || dup {
			t.Fatalf("put d%d: duplicate %v, %v", i, dup, err)
		}
	}
	c.wait(t, 5)
	if c.body["d3"] != "payload 3" {
		t.Errorf("d3 forwarded with %q", c.body["d3"])
	}
	// A redelivery of a forwarded delivery is a duplicate, and is not
	// forwarded again.
	if dup, err := b.Put("d3", []byte("again")); err != nil || !dup {
		t.Fatalf("redelivery of d3: duplicate %v, %v; want a duplicate", dup, err)
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(c.got); n != 5 {
		t.Errorf("%d forwards, want 5: %v", n, c.got)
	}
	if n, _ := b.Pending(); n != 0 {
		t.Errorf("%d pending after all were forwarded", n)
	}
	b.Close()
	if ids := pendingIDs(t, dir); len(ids) != 0 {
		t.Errorf("reopened inbox holds %v, want nothing: all were forwarded", ids)
	}
}

func TestPendingSurviveReopenInOrder(t *testing.T) {
	dir := t.TempDir()
	b := open(t, dir, Options{})
	var want []string
	for i := range 20 {
		id := fmt.Sprintf("d%02d", i)
		if _, err := b.Put(id, []byte(id)); err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	b.Close()
	if got := pendingIDs(t, dir); !slices.Equal(got, want) {
		t.Fatalf("reopened: %v, want %v", got, want)
	}

	// Forward the first half only, then close: the rest is still there.
	b = open(t, dir, Options{})
	if dup, err := b.Put("d05", nil); err != nil || !dup {
		t.Errorf("put of a pending ID after a reopen: duplicate %v, %v; want a duplicate", dup, err)
	}
	c := newCollector()
	var n atomic.Int32
	held := make(chan struct{})
	defer close(held)
	half := func(id string, p []byte, at time.Time) error {
		if n.Add(1) > 10 {
			<-held // as a forward under way when the process dies
			return errors.New("stopped")
		}
		return c.forward(id, p, at)
	}
	go b.Run(1, half)
	c.wait(t, 10)
	if !slices.Equal(c.got, want[:10]) {
		t.Errorf("forwarded %v, want the oldest first %v", c.got, want[:10])
	}
	b.Close()
	if got := pendingIDs(t, dir); !slices.Equal(got, want[10:]) {
		t.Fatalf("after forwarding ten: %v, want %v", got, want[10:])
	}
}

func TestTornTailKeepsWhatCameBefore(t *testing.T) {
	dir := t.TempDir()
	b := open(t, dir, Options{})
	for _, id := range []string{"a", "b", "c"} {
		if _, err := b.Put(id, []byte(strings.Repeat(id, 100))); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	segs, _ := segments(dir)
	last := filepath.Join(dir, fmt.Sprintf("%020d.log", segs[len(segs)-1]))
	st, _ := os.Stat(last)
	// Cut the last record in half, as a crash mid-write would.
	if err := os.Truncate(last, st.Size()-50); err != nil {
		t.Fatal(err)
	}
	if got := pendingIDs(t, dir); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("after a torn last record: %v, want [a b]", got)
	}
	// A flipped byte in a record's body fails its checksum the same way.
	f, _ := os.OpenFile(last, os.O_RDWR, 0)
	f.WriteAt([]byte{'X'}, 8+3+1+8+10)
	f.Close()
	if got := pendingIDs(t, dir); len(got) != 0 {
		t.Errorf("after a corrupt first record: %v, want nothing read past it", got)
	}
}

func TestSegmentsRollAndAreRemovedWhenDone(t *testing.T) {
	dir := t.TempDir()
	b := open(t, dir, Options{SegmentBytes: 4 << 10})
	payload := []byte(strings.Repeat("x", 1000))
	for i := range 40 {
		if _, err := b.Put(fmt.Sprint("d", i), payload); err != nil {
			t.Fatal(err)
		}
	}
	segs, _ := segments(dir)
	if len(segs) < 8 {
		t.Fatalf("%d segments for 40 KB at 4 KB each", len(segs))
	}
	c := newCollector()
	go b.Run(4, c.forward)
	c.wait(t, 40)
	// The done records go through the writer; the last removals follow.
	deadline := time.Now().Add(5 * time.Second)
	for {
		segs, _ = segments(dir)
		if len(segs) <= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(segs) > 2 {
		t.Errorf("%d segments left once every delivery was forwarded: %v", len(segs), segs)
	}
	b.Close()
	if got := pendingIDs(t, dir); len(got) != 0 {
		t.Errorf("reopened: %v pending", got)
	}
}

func TestFullInboxRefuses(t *testing.T) {
	b := open(t, t.TempDir(), Options{MaxPending: 2})
	for _, id := range []string{"a", "b"} {
		if _, err := b.Put(id, nil); err != nil {
			t.Fatal(err)
		}
	}
	_, err := b.Put("c", nil)
	if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "2 deliveries wait") {
		t.Fatalf("third put: %v, want ErrFull saying how many wait", err)
	}
	b2 := open(t, t.TempDir(), Options{MaxPendingBytes: 10})
	if _, err := b2.Put("big", make([]byte, 11)); !errors.Is(err, ErrFull) {
		t.Fatalf("put over the byte bound: %v, want ErrFull", err)
	}
}

func TestFailedForwardIsRetried(t *testing.T) {
	b := open(t, t.TempDir(), Options{})
	c := newCollector()
	c.fail["flaky"] = 2
	go b.Run(1, c.forward)
	start := time.Now()
	if _, err := b.Put("flaky", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put("fine", []byte("y")); err != nil {
		t.Fatal(err)
	}
	c.wait(t, 2)
	// The failing one waits its backoff (200 ms, then 400 ms) without
	// holding up the other.
	if c.got[0] != "fine" || c.got[1] != "flaky" {
		t.Errorf("forwarded %v, want fine then flaky", c.got)
	}
	if d := time.Since(start); d < 600*time.Millisecond {
		t.Errorf("flaky forwarded after %v: no backoff", d)
	}
}

func TestConcurrentDuplicatesTakeOne(t *testing.T) {
	b := open(t, t.TempDir(), Options{})
	var taken atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			dup, err := b.Put("same", []byte("x"))
			if err != nil {
				t.Error(err)
			}
			if !dup {
				taken.Add(1)
			}
		})
	}
	wg.Wait()
	if n := taken.Load(); n != 1 {
		t.Errorf("%d of 50 concurrent puts of one ID were taken, want 1", n)
	}
}

// TestKill9LosesNoAcknowledgedDelivery kills a process writing to an inbox
// (SIGKILL, mid-stream) and checks that every delivery it had acknowledged
// is pending in the inbox it left.
func TestKill9LosesNoAcknowledgedDelivery(t *testing.T) {
	if dir := os.Getenv("INBOX_KILL_CHILD"); dir != "" {
		b, err := Open(dir, Options{SegmentBytes: 64 << 10})
		if err != nil {
			fmt.Println("open:", err)
			os.Exit(1)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		for w := range 8 {
			wg.Go(func() {
				for i := 0; ; i++ {
					id := fmt.Sprintf("w%d-%06d", w, i)
					if _, err := b.Put(id, []byte(strings.Repeat("p", 500))); err != nil {
						fmt.Println("put:", err)
						os.Exit(1)
					}
					mu.Lock()
					fmt.Println("acked", id)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestKill9LosesNoAcknowledgedDelivery$")
	cmd.Env = append(os.Environ(), "INBOX_KILL_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]bool{}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		id, ok := strings.CutPrefix(sc.Text(), "acked ")
		if !ok {
			t.Fatalf("child: %s", sc.Text())
		}
		acked[id] = true
		if len(acked) == 3000 {
			cmd.Process.Signal(syscall.SIGKILL)
			break
		}
	}
	// Lines the child printed before it died are acknowledged too.
	for sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "acked "); ok {
			acked[id] = true
		}
	}
	cmd.Wait()
	pending := map[string]bool{}
	for _, id := range pendingIDs(t, dir) {
		pending[id] = true
	}
	lost := 0
	for id := range acked {
		if !pending[id] {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged deliveries are not in the inbox after kill -9", lost, len(acked))
	}
	segs, _ := segments(dir)
	t.Logf("%d acknowledged, %d in the inbox after kill -9, %d segments", len(acked), len(pending), len(segs))
}
