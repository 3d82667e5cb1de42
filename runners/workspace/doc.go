// Package workspace prepares the directory the steps of a stage share: a
// fresh copy of the repository at the commit being run, under
// <root>/<run>/<stage>, so that stages running side by side on one runner,
// and runs of different commits, never see each other's files.
//
// A workspace is normally a checkout of exactly one commit, made from a
// local repository with the git command. For `sluice run --dirty` it is
// instead a copy of the working tree as it is, uncommitted changes and
// untracked files included, leaving out what .gitignore excludes.
package workspace
