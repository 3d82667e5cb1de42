// Package container runs run steps that set image: the command runs in a
// container of that image through BuildKit, with the stage's workspace
// mounted at /workspace and the files it changes written back, so that the
// next step of the stage sees them.
package container
