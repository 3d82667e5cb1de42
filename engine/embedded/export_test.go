package embedded

import "time"

// SetLockCheck sets how often a server on PostgreSQL checks the session of
// its lock, until the returned func restores it.
func SetLockCheck(d time.Duration) (restore func()) {
	old := lockCheck
	lockCheck = d
	return func() { lockCheck = old }
}
