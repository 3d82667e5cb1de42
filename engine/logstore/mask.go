package logstore

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"sync"
)

// MinSecretLen is the shortest secret value NewMasker hides. A value of one
// to three bytes protects nothing (it can be guessed in a few million
// tries) and masking it would garble ordinary words and paths all through a
// log ("dev", "go", "1"); such secrets are left visible on purpose.
const MinSecretLen = 4

// Mask replaces secret values in logs.
const Mask = "***"

// NewMasker returns a writer that passes everything to w with every
// occurrence of any of the secrets replaced by Mask, so that a value that
// came from a secret never reaches a log. A secret split across two or more
// Write calls is still found: bytes that may be the start of a secret are
// held back until the following Write decides. Where occurrences overlap or
// touch, the whole stretch becomes a single Mask, so no part of any secret
// shows. Each line of a multi-line secret (a PEM key, say) is also a secret
// of its own, because programs often print such values line by line.
// Values shorter than MinSecretLen are ignored, as are empty lines.
//
// The returned writer must be closed at the end of the stream: Close writes
// what is held back. It does not close w. Write and Close are safe for
// concurrent use.
func NewMasker(w io.Writer, secrets []string) io.WriteCloser {
	set := map[string]bool{}
	add := func(s string) {
		if len(s) >= MinSecretLen && strings.TrimSpace(s) != "" {
			set[s] = true
		}
	}
	for _, s := range secrets {
		add(s)
		if strings.ContainsAny(s, "\r\n") {
			for _, line := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }) {
				add(line)
			}
		}
	}
	m := &masker{w: w}
	for s := range set {
		m.secrets = append(m.secrets, []byte(s))
	}
	// Sorted only so that the masker behaves the same on every run.
	slices.SortFunc(m.secrets, bytes.Compare)
	return m
}

type masker struct {
	mu      sync.Mutex
	w       io.Writer
	secrets [][]byte
	// held is the tail of the stream that may be the start of a secret.
	held []byte
	// heldCovered is how many bytes at the start of held belong to a
	// secret that started before it.
	heldCovered int
	// masking is true when the last thing written to w was Mask, so that a
	// secret continuing where it left off adds no second Mask.
	masking bool
}

func (m *masker) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.secrets) == 0 {
		return m.w.Write(p)
	}
	buf := append(m.held, p...)
	if err := m.process(buf, false); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close writes the held-back bytes, masked where they are a secret.
func (m *masker) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.held) == 0 {
		return nil
	}
	return m.process(m.held, true)
}

// process writes buf to w, masked. Unless final, it keeps back the shortest
// tail of buf that may still turn into a secret.
func (m *masker) process(buf []byte, final bool) error {
	covered := make([]bool, len(buf))
	for i := 0; i < m.heldCovered && i < len(buf); i++ {
		covered[i] = true
	}
	// cut is where the held-back tail starts: the earliest position from
	// which buf is a proper prefix of some secret.
	cut := len(buf)
	for _, s := range m.secrets {
		for off := 0; ; {
			i := bytes.Index(buf[off:], s)
			if i < 0 {
				break
			}
			for j := off + i; j < off+i+len(s); j++ {
				covered[j] = true
			}
			off += i + 1 // occurrences of a secret may overlap each other
		}
		if !final {
			if k := prefixAtEnd(buf, s); k > 0 && len(buf)-k < cut {
				cut = len(buf) - k
			}
		}
	}
	// A secret found in full that runs past cut keeps covering the held
	// tail after this call has forgotten where it started.
	m.heldCovered = 0
	for i := cut; i < len(buf) && covered[i]; i++ {
		m.heldCovered++
	}

	var out bytes.Buffer
	for i := 0; i < cut; {
		if covered[i] {
			if !m.masking {
				out.WriteString(Mask)
				m.masking = true
			}
			i++
			continue
		}
		j := i
		for j < cut && !covered[j] {
			j++
		}
		out.Write(buf[i:j])
		m.masking = false
		i = j
	}
	m.held = append(m.held[:0:0], buf[cut:]...)
	if out.Len() == 0 {
		return nil
	}
	_, err := m.w.Write(out.Bytes())
	return err
}

// prefixAtEnd returns the length of the longest tail of buf that is a
// proper prefix of s, or 0.
func prefixAtEnd(buf, s []byte) int {
	longest := min(len(s)-1, len(buf))
	tail := buf[len(buf)-longest:]
	for i := 0; i < len(tail); i++ {
		j := bytes.IndexByte(tail[i:], s[0])
		if j < 0 {
			return 0
		}
		i += j
		if bytes.HasPrefix(s, tail[i:]) {
			return len(tail) - i
		}
	}
	return 0
}
