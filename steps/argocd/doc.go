// Package argocd runs argocd steps: the GitOps hand-off of a deploy. The
// step commits the new image to the file of the GitOps repository that
// Argo CD watches (package gitops), then, when an Argo CD server is
// configured, syncs the application to that commit and waits through
// Argo CD's REST API until it is synced and healthy. Rollback puts the
// previous image back the same way.
package argocd
