//go:build !linux

package netns

import (
	"errors"
	"syscall"
)

var errNotLinux = errors.New("network namespaces are Linux's")

func supported() error                   { return errNotLinux }
func procAttr() *syscall.SysProcAttr     { return nil }
func killGroup(int)                      {}
func kill(int)                           {}
func enter(string) (func() error, error) { return nil, errNotLinux }
func processesIn(string) ([]int, error)  { return nil, errNotLinux }
func ownerRecord(int) string             { return "" }
func ownerAlive(string) bool             { return true }
