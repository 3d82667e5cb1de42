package buildkit

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/moby/buildkit/client"
)

// Conn is a lazily dialled, shared connection to buildkitd. Executors keep
// one for the life of the runner, so that a step does not pay for a new
// gRPC connection; a connection that failed is dropped and the next step
// dials again, which is what lets a step retried after buildkitd restarted
// succeed.
type Conn struct {
	// Addr is buildkitd's address, such as unix:///run/buildkit/buildkitd.sock
	// or tcp://127.0.0.1:1234.
	Addr string

	mu sync.Mutex
	c  *client.Client
}

// Client returns the connection, dialling it on first use.
func (c *Conn) Client(ctx context.Context) (*client.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c != nil {
		return c.c, nil
	}
	if c.Addr == "" {
		return nil, errors.New("this runner has no BuildKit: start buildkitd and set BUILDKIT_HOST, or run the step on a runner with BuildKit")
	}
	cl, err := client.New(ctx, c.Addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to buildkitd at %s: %w", c.Addr, err)
	}
	c.c = cl
	return cl, nil
}

// Drop forgets the connection cl after it failed, unless another step
// already replaced it.
func (c *Conn) Drop(cl *client.Client) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == cl && cl != nil {
		cl.Close()
		c.c = nil
	}
}

// Close closes the connection.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return nil
	}
	err := c.c.Close()
	c.c = nil
	return err
}
