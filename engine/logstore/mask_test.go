package logstore

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestMasker(t *testing.T) {
	key := "-----BEGIN KEY-----\nMIIEpAIBAAKCAQEA\nZm9vYmFyYmF6\n-----END KEY-----"
	for _, tc := range []struct {
		name    string
		secrets []string
		writes  []string
		want    string
	}{
		{
			name:   "no secrets",
			writes: []string{"hello ", "world\n"},
			want:   "hello world\n",
		},
		{
			name:    "whole secret in one write",
			secrets: []string{"hunter2"},
			writes:  []string{"password is hunter2, again hunter2\n"},
			want:    "password is ***, again ***\n",
		},
		{
			name:    "secret split across writes",
			secrets: []string{"hunter2"},
			writes:  []string{"password is hun", "ter2 ok\n"},
			want:    "password is *** ok\n",
		},
		{
			name:    "secret split across many writes",
			secrets: []string{"hunter2"},
			writes:  []string{"h", "u", "n", "t", "e", "r", "2", "\n"},
			want:    "***\n",
		},
		{
			name:    "prefix that is not a secret after all",
			secrets: []string{"hunter2"},
			writes:  []string{"the hunt", "ers\n"},
			want:    "the hunters\n",
		},
		{
			name:    "held-back prefix written at close",
			secrets: []string{"hunter2"},
			writes:  []string{"ends with hunt"},
			want:    "ends with hunt",
		},
		{
			name:    "secret at the very end",
			secrets: []string{"hunter2"},
			writes:  []string{"ends with hunter2"},
			want:    "ends with ***",
		},
		{
			name:    "overlapping secrets",
			secrets: []string{"abcdef", "defghi"},
			writes:  []string{"x abcdefghi y\n"},
			want:    "x *** y\n",
		},
		{
			name:    "overlapping secrets split across writes",
			secrets: []string{"abcdef", "defghi"},
			writes:  []string{"x abcd", "efg", "hi y\n"},
			want:    "x *** y\n",
		},
		{
			name:    "secret inside a longer secret",
			secrets: []string{"token", "my-token-value"},
			writes:  []string{"a my-tok", "en-value b token\n"},
			want:    "a *** b ***\n",
		},
		{
			name:    "short secret that starts a longer one",
			secrets: []string{"abcd", "abcdefgh"},
			writes:  []string{"abcd", "efgh abcd!\n"},
			want:    "*** ***!\n",
		},
		{
			name:    "adjacent occurrences become one mask",
			secrets: []string{"aaaa"},
			writes:  []string{"x aaaaaaaaaa", "aaa y\n"},
			want:    "x *** y\n",
		},
		{
			name:    "self-overlapping secret across writes",
			secrets: []string{"abab"},
			writes:  []string{"ababa", "b ab", "ab"},
			want:    "*** ***",
		},
		{
			name:    "multi-line secret whole",
			secrets: []string{key},
			writes:  []string{"key:\n" + key + "\ndone\n"},
			want:    "key:\n***\ndone\n",
		},
		{
			name:    "multi-line secret written line by line",
			secrets: []string{key},
			writes:  strings.SplitAfter("key:\n"+key+"\ndone\n", "\n"),
			want:    "key:\n***\ndone\n",
		},
		{
			name:    "each line of a multi-line secret is a secret",
			secrets: []string{key},
			writes:  []string{"  MIIEpAIBAAKCAQEA  \n"},
			want:    "  ***  \n",
		},
		{
			name:    "multi-line secret with CRLF",
			secrets: []string{"line-one\r\nline-two"},
			writes:  []string{"a line-one\n", "b line-two\n"},
			want:    "a ***\nb ***\n",
		},
		{
			name:    "short and empty secrets are ignored",
			secrets: []string{"", "go", "dev", "   ", "\n\n"},
			writes:  []string{"go build /dev/null\n"},
			want:    "go build /dev/null\n",
		},
		{
			name:    "secret of exactly the minimum length",
			secrets: []string{"abcd"},
			writes:  []string{"xabcdx\n"},
			want:    "x***x\n",
		},
		{
			name:    "regular expression characters are literal",
			secrets: []string{"a.*b$"},
			writes:  []string{"axxb a.*b$\n"},
			want:    "axxb ***\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			m := NewMasker(&out, tc.secrets)
			for _, w := range tc.writes {
				n, err := m.Write([]byte(w))
				if err != nil || n != len(w) {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			if got := out.String(); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestMaskerEverySplit writes a text in two pieces at every possible point
// and checks that the result never depends on where it was split.
func TestMaskerEverySplit(t *testing.T) {
	secrets := []string{"s3cr3t-value", "value-two", "t-val", "multi\nline\nsecret"}
	text := "begin s3cr3t-value-two mid s3cr3t s3cr3t-valu multi\nline\nsecret t-value end"
	var whole bytes.Buffer
	m := NewMasker(&whole, secrets)
	m.Write([]byte(text))
	m.Close()
	want := "begin *** mid s3cr3t s3cr3***u *** ***ue end"
	if whole.String() != want {
		t.Fatalf("whole: got %q, want %q", whole.String(), want)
	}
	for i := 0; i <= len(text); i++ {
		for j := i; j <= len(text); j++ {
			var out bytes.Buffer
			m := NewMasker(&out, secrets)
			m.Write([]byte(text[:i]))
			m.Write([]byte(text[i:j]))
			m.Write([]byte(text[j:]))
			m.Close()
			if out.String() != want {
				t.Fatalf("split at %d,%d: got %q, want %q", i, j, out.String(), want)
			}
		}
	}
}

func TestMaskerHoldsBackLittle(t *testing.T) {
	var out bytes.Buffer
	m := NewMasker(&out, []string{"hunter2"})
	m.Write([]byte("a complete line\n"))
	if out.String() != "a complete line\n" {
		t.Errorf("a line with no possible secret at its end was held back: %q", out.String())
	}
	m.Write([]byte("trailing hunt"))
	if out.String() != "a complete line\ntrailing " {
		t.Errorf("got %q, want only the possible secret held back", out.String())
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestMaskerWriteError(t *testing.T) {
	m := NewMasker(failWriter{}, []string{"hunter2"})
	if _, err := m.Write([]byte("line\n")); err == nil {
		t.Error("Write: no error from a failing writer")
	}
}

func FuzzMasker(f *testing.F) {
	f.Add("password hunter2 here", 3, "hunter2", "ter2 h")
	f.Add("aaaaaaa", 2, "aaa", "aaaa")
	f.Fuzz(func(t *testing.T, text string, split int, s1, s2 string) {
		secrets := []string{s1, s2}
		var whole, parts bytes.Buffer
		m := NewMasker(&whole, secrets)
		m.Write([]byte(text))
		m.Close()
		if split < 0 || split > len(text) {
			split = len(text) / 2
		}
		m = NewMasker(&parts, secrets)
		m.Write([]byte(text[:split]))
		m.Write([]byte(text[split:]))
		m.Close()
		if whole.String() != parts.String() {
			t.Fatalf("split at %d changed the output: %q vs %q", split, whole.String(), parts.String())
		}
		for _, s := range secrets {
			if len(s) >= MinSecretLen && strings.TrimSpace(s) != "" && !strings.Contains(s, Mask) && !strings.ContainsAny(s, "\r\n") &&
				strings.Contains(whole.String(), s) {
				t.Fatalf("secret %q survives in %q", s, whole.String())
			}
		}
	})
}
