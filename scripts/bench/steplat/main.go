// Command steplat reads the history of a finished sluice run and prints
// where the time of its activities went: workflow task latency, activity
// schedule→start, start→complete, and completion→next workflow task start,
// as medians over the run's activities. It is a measuring aid for
// scripts/bench (see docs/benchmarks.md).
//
//	go run ./scripts/bench/steplat -address 127.0.0.1:7233 RUN_ID
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
)

func main() {
	address := flag.String("address", "127.0.0.1:7233", "Temporal frontend")
	namespace := flag.String("namespace", "sluice", "namespace")
	list := flag.Bool("events", false, "also list every event with its time from the first")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: steplat [-address HOST:PORT] [-namespace NS] RUN_ID")
		os.Exit(2)
	}
	c, err := client.Dial(client.Options{HostPort: *address, Namespace: *namespace})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer c.Close()
	it := c.GetWorkflowHistory(context.Background(), flag.Arg(0), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var events []*historypb.HistoryEvent
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		events = append(events, e)
	}
	at := func(e *historypb.HistoryEvent) time.Time { return e.GetEventTime().AsTime() }
	byID := map[int64]*historypb.HistoryEvent{}
	var wftSchedToStart, wftStartToDone, actSchedToStart, actStartToDone, doneToWFT []time.Duration
	var lastActDone time.Time
	for _, e := range events {
		byID[e.GetEventId()] = e
		switch e.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED:
			s := byID[e.GetWorkflowTaskStartedEventAttributes().GetScheduledEventId()]
			wftSchedToStart = append(wftSchedToStart, at(e).Sub(at(s)))
			if !lastActDone.IsZero() {
				doneToWFT = append(doneToWFT, at(e).Sub(lastActDone))
				lastActDone = time.Time{}
			}
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
			s := byID[e.GetWorkflowTaskCompletedEventAttributes().GetStartedEventId()]
			wftStartToDone = append(wftStartToDone, at(e).Sub(at(s)))
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED:
			s := byID[e.GetActivityTaskStartedEventAttributes().GetScheduledEventId()]
			actSchedToStart = append(actSchedToStart, at(e).Sub(at(s)))
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			s := byID[e.GetActivityTaskCompletedEventAttributes().GetStartedEventId()]
			actStartToDone = append(actStartToDone, at(e).Sub(at(s)))
			lastActDone = at(e)
		}
	}
	if *list {
		for _, e := range events {
			name := e.GetEventType().String()
			if a := e.GetActivityTaskScheduledEventAttributes(); a != nil {
				name += " " + a.GetActivityType().GetName()
			}
			fmt.Printf("%8.1f ms  %s\n", float64(at(e).Sub(at(events[0])).Microseconds())/1000, name)
		}
	}
	fmt.Printf("events %d, workflow %s\n", len(events), at(events[len(events)-1]).Sub(at(events[0])))
	for _, row := range []struct {
		name string
		d    []time.Duration
	}{
		{"workflow task schedule→start", wftSchedToStart},
		{"workflow task start→complete", wftStartToDone},
		{"activity schedule→start", actSchedToStart},
		{"activity start→complete", actStartToDone},
		{"activity complete→workflow task start", doneToWFT},
	} {
		fmt.Printf("%-40s n=%-4d median %-10s sum %s\n", row.name, len(row.d), median(row.d), sum(row.d))
	}
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func sum(d []time.Duration) (t time.Duration) {
	for _, x := range d {
		t += x
	}
	return t
}
