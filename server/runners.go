package server

import (
	"net/http"
	"sort"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/sluice-ci/sluice/engine"
)

// RunnerInfo is a worker polling one of Sluice's queues.
type RunnerInfo struct {
	Identity string    `json:"identity"`
	Queue    string    `json:"queue"`
	LastSeen time.Time `json:"last_seen"`
}

func (s *Server) apiRunners(w http.ResponseWriter, r *http.Request, _ string) {
	queues := []string{engine.StageQueue(nil)}
	for _, l := range s.cfg.Labels {
		queues = append(queues, engine.StageQueue([]string{l}))
	}
	runners := []RunnerInfo{}
	for _, q := range queues {
		resp, err := s.client.DescribeTaskQueue(r.Context(), q, enumspb.TASK_QUEUE_TYPE_ACTIVITY)
		if err != nil {
			httpError(w, http.StatusBadGateway, err.Error())
			return
		}
		for _, p := range resp.GetPollers() {
			runners = append(runners, RunnerInfo{Identity: p.GetIdentity(), Queue: q, LastSeen: p.GetLastAccessTime().AsTime()})
		}
	}
	sort.Slice(runners, func(i, j int) bool { return runners[i].Identity < runners[j].Identity })
	writeJSON(w, http.StatusOK, map[string]any{"runners": runners})
}
