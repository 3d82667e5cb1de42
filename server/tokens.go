package server

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sluice-ci/sluice/internal/proc"
)

// TokenPrefix starts every API token, so that a leaked one is recognisable
// (secret scanners) and never mistaken for a password.
const TokenPrefix = "sluice_"

// Token is an API token as the server keeps it: only a digest of the
// secret, never the secret.
type Token struct {
	ID      string    `json:"id"`
	User    string    `json:"user"`
	Digest  string    `json:"sha256"`
	Created time.Time `json:"created"`
	// Runner says the token is a runner's (sluice server token create
	// --runner NAME): besides acting as NAME, it may ask for read-only
	// credentials to check out a run's repository from GitHub.
	Runner bool `json:"runner,omitempty"`
}

// Tokens are the API's bearer tokens, in a file of the server's home that
// `sluice server token create` writes and the server reads again when it
// changes.
type Tokens struct {
	file string
	mu   sync.Mutex
	mod  time.Time
	list []Token
}

// TokensFile is where a home keeps its tokens.
func TokensFile(home string) string { return filepath.Join(home, "server", "tokens.json") }

// OpenTokens reads the token file; a missing file is no tokens.
func OpenTokens(file string) (*Tokens, error) {
	t := &Tokens{file: file}
	return t, t.reload()
}

func (t *Tokens) reload() error {
	fi, err := os.Stat(t.file)
	if errors.Is(err, fs.ErrNotExist) {
		t.list, t.mod = nil, time.Time{}
		return nil
	}
	if err != nil {
		return err
	}
	if fi.ModTime().Equal(t.mod) && t.list != nil {
		return nil
	}
	b, err := os.ReadFile(t.file)
	if err != nil {
		return err
	}
	var list []Token
	if err := json.Unmarshal(b, &list); err != nil {
		return fmt.Errorf("reading the API tokens in %s: %w", t.file, err)
	}
	t.list, t.mod = list, fi.ModTime()
	return nil
}

// Create makes a token for user and returns its secret, which is shown
// once and kept nowhere.
func (t *Tokens) Create(user string) (string, error) {
	if user == "" || strings.ContainsAny(user, " \t\n/") {
		return "", fmt.Errorf("a token needs the user it acts as, a GitHub login like alice; got %q", user)
	}
	return t.create(Token{User: user})
}

// CreateRunner makes a runner's token, named name (see Token.Runner).
func (t *Tokens) CreateRunner(name string) (string, error) {
	if name == "" || strings.ContainsAny(name, " \t\n/") {
		return "", fmt.Errorf("a runner's token needs the runner's name, like build-1; got %q", name)
	}
	return t.create(Token{User: name, Runner: true})
}

func (t *Tokens) create(tok Token) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.reload(); err != nil {
		return "", err
	}
	var b [20]byte
	_, _ = rand.Read(b[:])
	secret := TokenPrefix + hex.EncodeToString(b[:])
	sum := sha256.Sum256([]byte(secret))
	tok.ID, tok.Digest, tok.Created = hex.EncodeToString(b[:3]), hex.EncodeToString(sum[:]), time.Now().UTC()
	list := append(append([]Token(nil), t.list...), tok)
	if err := os.MkdirAll(filepath.Dir(t.file), 0o700); err != nil {
		return "", err
	}
	if err := proc.WriteRecord(t.file, list); err != nil {
		return "", fmt.Errorf("saving the token: %w", err)
	}
	t.list = list
	return secret, nil
}

// User returns who a bearer token acts as.
func (t *Tokens) User(secret string) (string, bool) {
	tok, ok := t.Lookup(secret)
	return tok.User, ok
}

// Lookup returns the token whose secret this is.
func (t *Tokens) Lookup(secret string) (Token, bool) {
	if !strings.HasPrefix(secret, TokenPrefix) {
		return Token{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.reload(); err != nil {
		return Token{}, false
	}
	sum := sha256.Sum256([]byte(secret))
	d := []byte(hex.EncodeToString(sum[:]))
	for _, tok := range t.list {
		if subtle.ConstantTimeCompare(d, []byte(tok.Digest)) == 1 {
			return tok, true
		}
	}
	return Token{}, false
}
