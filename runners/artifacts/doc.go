// Package artifacts moves the files a stage declares as artifacts from
// its workspace to the workspaces of the stages that need it: one tar
// layer stored as an OCI artifact in the run's registry, or in a directory
// when the runner has no registry.
package artifacts
