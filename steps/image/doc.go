// Package image runs image steps: a Dockerfile build through BuildKit's
// dockerfile.v0 frontend, with build arguments, secrets, registry cache
// and a push of every tag, whose digest becomes the step's outputs.
package image
