// Package inbox is the server's durable queue of the deliveries it has
// taken but not yet handed to Temporal.
//
// A webhook is answered 202 once its delivery is appended to a log on
// disk and synced, not once Temporal has started its workflow: the answer
// then costs a file append, whatever Temporal's queue looks like, and a
// burst of deliveries waits here instead of being refused. A forwarder
// hands each delivery to Temporal (it starts the delivery's workflow, whose
// ID derives from the delivery, so a delivery forwarded twice starts one
// workflow) and only then marks it done. A process killed at any point
// loses nothing: what the log holds and is not marked done is forwarded
// again when the inbox opens.
//
// The log is a sequence of segment files, NNNNNNNNNNNNNNNNNNNN.log, each a
// sequence of records:
//
//	uint32 length of what follows the checksum (big endian)
//	uint32 CRC-32C of it
//	byte   kind: 1 put, 2 done
//	uint16 length of the ID, the ID
//	put:   int64 Unix nanoseconds received, the payload
//
// Appends go through one writer that writes a batch of records and syncs
// once for all the puts in it (group commit). A torn record at the end of a
// segment (a crash mid-write) ends it. A segment is removed once every put
// in it and in every older segment is done.
package inbox

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options bound an inbox.
type Options struct {
	// MaxPending is how many deliveries may wait; a Put beyond it is
	// refused with ErrFull (default 100,000).
	MaxPending int
	// MaxPendingBytes bounds the payloads waiting, which the inbox keeps
	// in memory (default 512 MiB).
	MaxPendingBytes int64
	// SegmentBytes is the size at which a new segment is started
	// (default 16 MiB).
	SegmentBytes int64
	// Remember is how long a forwarded delivery's ID is remembered, so that
	// a redelivery in that time is answered as a duplicate without asking
	// Temporal (default 1 h). After it, a redelivery is taken again and
	// the forwarder finds its workflow started: nothing runs twice.
	Remember time.Duration
	Log      *slog.Logger
}

// ErrFull is returned by Put when the inbox holds MaxPending deliveries or
// MaxPendingBytes of them.
var ErrFull = errors.New("the inbox is full")

// ErrClosed is returned by Put after Close.
var ErrClosed = errors.New("the inbox is closed")

const (
	kindPut  = 1
	kindDone = 2
	// maxRecord bounds a record read back: a length beyond it is a torn or
	// corrupt record, not an allocation to make.
	maxRecord = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Inbox is an open inbox directory.
type Inbox struct {
	dir  string
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	cond    *sync.Cond
	pending map[string]*entry
	queue   []*entry // ready to forward, oldest first
	bytes   int64
	// seen are the IDs forwarded lately, with when.
	seen   map[string]time.Time
	live   map[int64]int // segment → puts in it not done
	closed bool

	writes chan *write
	wdone  chan struct{}
	// wmu guards sending on writes against Close closing it.
	wmu     sync.RWMutex
	wclosed bool
	// writer's state
	seq  int64
	f    *os.File
	size int64
	segs []int64 // segments on disk, oldest first, the current last
}

type entry struct {
	ID       string
	Payload  []byte
	Received time.Time
	seg      int64
	attempts int
	// synced is closed once the put is on disk (or failed: err).
	synced chan struct{}
	err    error
}

type write struct {
	rec  []byte
	put  *entry
	done chan error
}

// Open opens the inbox in dir, making it if needed, and reads back what
// it holds: the deliveries not marked done are pending again, oldest
// first.
func Open(dir string, opts Options) (*Inbox, error) {
	if opts.MaxPending <= 0 {
		opts.MaxPending = 100_000
	}
	if opts.MaxPendingBytes <= 0 {
		opts.MaxPendingBytes = 512 << 20
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = 16 << 20
	}
	if opts.Remember <= 0 {
		opts.Remember = time.Hour
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("making the inbox %s: %w", dir, err)
	}
	b := &Inbox{dir: dir, opts: opts, log: opts.Log, pending: map[string]*entry{}, seen: map[string]time.Time{},
		live: map[int64]int{}, writes: make(chan *write, 1024), wdone: make(chan struct{})}
	b.cond = sync.NewCond(&b.mu)
	if err := b.load(); err != nil {
		return nil, err
	}
	if err := b.roll(); err != nil {
		return nil, err
	}
	b.collect()
	go b.writer()
	return b, nil
}

// segments lists the segment files in dir, oldest first.
func segments(dir string) ([]int64, error) {
	names, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []int64
	for _, n := range names {
		s, ok := strings.CutSuffix(n.Name(), ".log")
		if !ok {
			continue
		}
		if seq, err := strconv.ParseInt(s, 10, 64); err == nil {
			segs = append(segs, seq)
		}
	}
	slices.Sort(segs)
	return segs, nil
}

func (b *Inbox) path(seq int64) string { return filepath.Join(b.dir, fmt.Sprintf("%020d.log", seq)) }

// load reads every segment back.
func (b *Inbox) load() error {
	segs, err := segments(b.dir)
	if err != nil {
		return fmt.Errorf("reading the inbox %s: %w", b.dir, err)
	}
	now := time.Now()
	for _, seq := range segs {
		f, err := os.Open(b.path(seq))
		if err != nil {
			return fmt.Errorf("reading the inbox: %w", err)
		}
		n, err := readSegment(bufio.NewReaderSize(f, 1<<16), func(kind byte, id string, at time.Time, payload []byte) {
			switch kind {
			case kindPut:
				if _, ok := b.pending[id]; ok {
					return
				}
				e := &entry{ID: id, Payload: payload, Received: at, seg: seq, synced: closedChan}
				b.pending[id] = e
				b.bytes += int64(len(payload))
				b.live[seq]++
			case kindDone:
				if e, ok := b.pending[id]; ok {
					delete(b.pending, id)
					b.bytes -= int64(len(e.Payload))
					b.live[e.seg]--
				}
				b.seen[id] = now
			}
		})
		f.Close()
		if err != nil {
			// What follows a torn record was never acknowledged: the
			// writer syncs a batch before it answers any put in it.
			b.log.Warn("inbox segment ends in a torn record; what was before it is kept", "segment", b.path(seq), "records", n, "error", err)
		}
		b.segs = append(b.segs, seq)
		b.seq = seq
	}
	for _, e := range b.pending {
		b.queue = append(b.queue, e)
	}
	slices.SortFunc(b.queue, func(x, y *entry) int { return x.Received.Compare(y.Received) })
	if len(b.queue) > 0 {
		b.log.Info("inbox holds deliveries not yet in Temporal; forwarding them", "deliveries", len(b.queue))
	}
	return nil
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// readSegment calls f for each whole record of r, and returns how many
// there were and why it stopped when it was not at a clean end.
func readSegment(r io.Reader, f func(kind byte, id string, at time.Time, payload []byte)) (int, error) {
	var head [8]byte
	for n := 0; ; n++ {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			if err == io.EOF {
				return n, nil
			}
			return n, fmt.Errorf("record %d: %w", n, err)
		}
		size := binary.BigEndian.Uint32(head[:4])
		if size < 3 || size > maxRecord {
			return n, fmt.Errorf("record %d: length %d", n, size)
		}
		body := make([]byte, size)
		if _, err := io.ReadFull(r, body); err != nil {
			return n, fmt.Errorf("record %d: %w", n, err)
		}
		if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(head[4:]) {
			return n, fmt.Errorf("record %d: checksum", n)
		}
		kind, idLen := body[0], int(binary.BigEndian.Uint16(body[1:3]))
		rest := body[3:]
		if idLen > len(rest) {
			return n, fmt.Errorf("record %d: ID length %d", n, idLen)
		}
		id, rest := string(rest[:idLen]), rest[idLen:]
		switch kind {
		case kindPut:
			if len(rest) < 8 {
				return n, fmt.Errorf("record %d: short put", n)
			}
			at := time.Unix(0, int64(binary.BigEndian.Uint64(rest[:8])))
			f(kind, id, at, rest[8:])
		case kindDone:
			f(kind, id, time.Time{}, nil)
		default:
			return n, fmt.Errorf("record %d: kind %d", n, kind)
		}
	}
}

func record(kind byte, id string, at time.Time, payload []byte) []byte {
	size := 3 + len(id)
	if kind == kindPut {
		size += 8 + len(payload)
	}
	rec := make([]byte, 8, 8+size)
	rec = append(rec, kind)
	rec = binary.BigEndian.AppendUint16(rec, uint16(len(id)))
	rec = append(rec, id...)
	if kind == kindPut {
		rec = binary.BigEndian.AppendUint64(rec, uint64(at.UnixNano()))
		rec = append(rec, payload...)
	}
	binary.BigEndian.PutUint32(rec[:4], uint32(size))
	binary.BigEndian.PutUint32(rec[4:8], crc32.Checksum(rec[8:], castagnoli))
	return rec
}

// roll starts a new segment: the writer appends only to the one it made.
func (b *Inbox) roll() error {
	if b.f != nil {
		if err := b.f.Close(); err != nil {
			return err
		}
	}
	b.seq++
	f, err := os.OpenFile(b.path(b.seq), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("starting an inbox segment: %w", err)
	}
	b.f, b.size = f, 0
	b.mu.Lock()
	b.segs = append(b.segs, b.seq)
	b.mu.Unlock()
	// The new file's name must survive a crash too.
	return syncDir(b.dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// collect removes the oldest segments whose puts are all done (and whose
// older segments' are too), never the current one.
func (b *Inbox) collect() {
	b.mu.Lock()
	var gone []int64
	for len(b.segs) > 1 && b.live[b.segs[0]] <= 0 {
		gone = append(gone, b.segs[0])
		delete(b.live, b.segs[0])
		b.segs = b.segs[1:]
	}
	b.mu.Unlock()
	for _, seq := range gone {
		if err := os.Remove(b.path(seq)); err != nil && !errors.Is(err, os.ErrNotExist) {
			b.log.Warn("removing a done inbox segment", "segment", b.path(seq), "error", err)
		}
	}
}

// writer appends the records sent to it, a batch at a time, syncing once
// a batch holds a put.
func (b *Inbox) writer() {
	defer close(b.wdone)
	var batch []*write
	var buf []byte
	for w := range b.writes {
		batch, buf = append(batch[:0], w), append(buf[:0], w.rec...)
	more:
		for len(batch) < 512 {
			select {
			case w, ok := <-b.writes:
				if !ok {
					break more
				}
				batch, buf = append(batch, w), append(buf, w.rec...)
			default:
				break more
			}
		}
		sync := false
		for _, w := range batch {
			if w.put != nil {
				sync = true
				w.put.seg = b.seq
			}
		}
		_, err := b.f.Write(buf)
		if err == nil && sync {
			err = b.f.Sync()
		}
		if err != nil {
			err = fmt.Errorf("writing the inbox: %w", err)
		} else {
			b.size += int64(len(buf))
		}
		b.mu.Lock()
		for _, w := range batch {
			if w.put != nil && err == nil {
				b.live[w.put.seg]++
			}
		}
		b.mu.Unlock()
		for _, w := range batch {
			w.done <- err
		}
		if err == nil && b.size >= b.opts.SegmentBytes {
			if rerr := b.roll(); rerr != nil {
				b.log.Error("starting a new inbox segment; appending to the old one", "error", rerr)
			}
			b.collect()
		}
	}
	if b.f != nil {
		_ = b.f.Sync()
		_ = b.f.Close()
	}
}

// Put takes a delivery: once it returns nil the delivery is on disk and
// will be forwarded, whatever happens to this process. duplicate is true
// when the ID is waiting already or was forwarded within Remember; the
// delivery is then not taken again.
func (b *Inbox) Put(id string, payload []byte) (duplicate bool, err error) {
	if len(id) == 0 || len(id) > 1024 {
		return false, fmt.Errorf("a delivery ID of %d bytes", len(id))
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return false, ErrClosed
	}
	if e, ok := b.pending[id]; ok {
		b.mu.Unlock()
		// The first one's answer is this one's: a duplicate of a put that
		// did not reach the disk is not taken either.
		<-e.synced
		return e.err == nil, e.err
	}
	if at, ok := b.seen[id]; ok && time.Since(at) < b.opts.Remember {
		b.mu.Unlock()
		return true, nil
	}
	if len(b.pending) >= b.opts.MaxPending || b.bytes+int64(len(payload)) > b.opts.MaxPendingBytes {
		n := len(b.pending)
		b.mu.Unlock()
		return false, fmt.Errorf("%w: %d deliveries wait for Temporal", ErrFull, n)
	}
	e := &entry{ID: id, Payload: payload, Received: time.Now(), synced: make(chan struct{})}
	b.pending[id] = e
	b.bytes += int64(len(payload))
	b.mu.Unlock()

	w := &write{rec: record(kindPut, id, e.Received, payload), put: e, done: make(chan error, 1)}
	if b.send(w) {
		err = <-w.done
	} else {
		err = ErrClosed
	}
	b.mu.Lock()
	e.err = err
	close(e.synced)
	if err != nil {
		delete(b.pending, id)
		b.bytes -= int64(len(payload))
	} else {
		b.queue = append(b.queue, e)
		b.cond.Signal()
	}
	b.mu.Unlock()
	return false, err
}

// Pending is how many deliveries wait to be forwarded, and when the
// oldest of them was received.
func (b *Inbox) Pending() (n int, oldest time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.pending {
		if oldest.IsZero() || e.Received.Before(oldest) {
			oldest = e.Received
		}
	}
	return len(b.pending), oldest
}

// Forward is what hands a delivery to Temporal. It returns nil once
// Temporal has it (started, or found started already); any error leaves
// the delivery pending, to be forwarded again after a backoff.
type Forward func(id string, payload []byte, received time.Time) error

// Run forwards the deliveries, workers at a time, until Close.
func (b *Inbox) Run(workers int, forward Forward) {
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Go(func() {
			for {
				e := b.next()
				if e == nil {
					return
				}
				err := forward(e.ID, e.Payload, e.Received)
				if err == nil {
					b.done(e)
					continue
				}
				e.attempts++
				wait := backoff(e.attempts)
				if e.attempts == 1 || e.attempts%10 == 0 {
					b.log.Warn("forwarding a delivery to Temporal; it stays in the inbox and is tried again", "delivery", e.ID, "attempt", e.attempts, "retry_in", wait, "error", err)
				}
				time.AfterFunc(wait, func() { b.requeue(e) })
			}
		})
	}
	wg.Wait()
}

func backoff(attempt int) time.Duration {
	d := 200 * time.Millisecond << min(attempt-1, 8)
	return min(d, 30*time.Second)
}

func (b *Inbox) next() *entry {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.queue) == 0 && !b.closed {
		b.cond.Wait()
	}
	if b.closed {
		return nil
	}
	e := b.queue[0]
	b.queue[0] = nil
	b.queue = b.queue[1:]
	return e
}

func (b *Inbox) requeue(e *entry) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.queue = append(b.queue, e)
	b.cond.Signal()
}

// done marks a forwarded delivery: it is remembered for Remember and its
// put no longer keeps its segment.
func (b *Inbox) done(e *entry) {
	now := time.Now()
	b.mu.Lock()
	delete(b.pending, e.ID)
	b.bytes -= int64(len(e.Payload))
	b.live[e.seg]--
	b.seen[e.ID] = now
	if len(b.seen) > 1024 && len(b.seen)%1024 == 0 {
		for id, at := range b.seen {
			if now.Sub(at) >= b.opts.Remember {
				delete(b.seen, id)
			}
		}
	}
	oldest := len(b.segs) > 0 && b.segs[0] == e.seg
	b.mu.Unlock()
	// Not waited for: a done record lost in a crash means the delivery is
	// forwarded once more, which Temporal finds started.
	b.send(&write{rec: record(kindDone, e.ID, time.Time{}, nil), done: make(chan error, 1)})
	if oldest {
		b.collect()
	}
}

// send hands w to the writer, unless the inbox is closed.
func (b *Inbox) send(w *write) bool {
	b.wmu.RLock()
	defer b.wmu.RUnlock()
	if b.wclosed {
		return false
	}
	b.writes <- w
	return true
}

// Close stops the forwarders (Run returns once the forward calls under
// way have) and the writer; what is pending stays on disk for the next
// Open.
func (b *Inbox) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.cond.Broadcast()
	b.mu.Unlock()
	b.wmu.Lock()
	b.wclosed = true
	close(b.writes)
	b.wmu.Unlock()
	<-b.wdone
	return nil
}
