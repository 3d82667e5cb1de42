package server

import (
	"net/http"

	"github.com/sluice-ci/sluice/engine"
)

// apiRunners lists the runners that reported to the registry: online
// ones first, each with its labels, version, state, the stages it runs
// and when it last reported.
func (s *Server) apiRunners(w http.ResponseWriter, r *http.Request, _ string) {
	runners, err := engine.Runners(r.Context(), s.client)
	if err != nil {
		httpError(w, http.StatusBadGateway, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"runners": runners})
}
