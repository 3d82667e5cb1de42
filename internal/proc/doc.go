// Package proc holds what the local stack's services share about the
// processes behind them: whether a process lives, the attributes of a child
// that must die with sluice, and the small JSON records through which one
// sluice process tells others of the same $SLUICE_HOME where its services
// listen.
package proc
