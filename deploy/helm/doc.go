// Package helm holds the tests of Sluice's Helm chart (deploy/helm/sluice).
//
// It is a module of its own so that Helm's SDK and the Kubernetes API types
// never enter the main module. The tests render the chart with Helm's Go SDK
// for the default values and the sets in testdata/, decode every manifest
// strictly into the Kubernetes API types, run helm lint's checks, and give
// the rendered flags to the real sluice binary, built from the main module.
package helm
