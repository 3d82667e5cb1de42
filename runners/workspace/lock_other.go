//go:build !unix

package workspace

import "context"

// lock does nothing where flock(2) is missing: concurrent preparations of
// the same workspace are then the caller's to avoid.
func lock(ctx context.Context, path string) (unlock func(), err error) {
	return func() {}, ctx.Err()
}
