// Package image holds the sluice image's build, deploy/image/Dockerfile,
// and the script that prepares its context, prepare.sh; .sluice/sluice.hcl
// builds it with BuildKit (make image). The package has no code: its test
// builds the image's runtime stage with a real buildkitd and checks it as a
// runner would use it.
package image
