// Package scan runs scan steps: it asks Harbor to scan a pushed image by
// digest, waits for the scan, reads the vulnerability report and fails the
// step when a finding at or above the step's fail_on is not allowed.
//
// The Harbor API is called through github.com/goharbor/go-client, except
// the vulnerability report (.../additions/vulnerabilities), which the API
// description declares as a string (goharbor/go-client#41) and which is
// therefore read with plain HTTP. Every call is safe to repeat: a scan
// that is already running is waited for, not started twice.
package scan
