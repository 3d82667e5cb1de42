//go:build !linux

package logstore

// watch is a no-op where inotify does not exist: followers poll.
func watch(string) (<-chan struct{}, func()) { return nil, func() {} }
