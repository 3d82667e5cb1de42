package scan

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluice-ci/sluice/dsl/plan"
)

// rank orders the severities fail_on names. Harbor's Negligible ranks as
// low; Unknown, None and severities Sluice does not know rank below low and
// never fail a step.
var rank = map[string]int{"low": 1, "medium": 2, "high": 3, "critical": 4}

// severity maps a report's severity to the output it is counted in.
func severity(s string) string {
	switch strings.ToLower(s) {
	case "critical":
		return "critical"
	case "high":
		return "high"
	case "medium":
		return "medium"
	case "low", "negligible":
		return "low"
	}
	return "unknown"
}

// allowed is one allow entry, its expiry parsed.
type allowed struct {
	plan.Allow
	until time.Time // zero: forever
}

func parseAllow(in []plan.Allow) (map[string]allowed, error) {
	out := make(map[string]allowed, len(in))
	for _, a := range in {
		al := allowed{Allow: a}
		if a.Until != "" {
			d, err := time.Parse(time.DateOnly, a.Until)
			if err != nil {
				return nil, fmt.Errorf("allow %q: until %q is not a date; write YYYY-MM-DD, like \"2026-12-31\"", a.ID, a.Until)
			}
			al.until = d
		}
		out[strings.ToUpper(a.ID)] = al
	}
	return out, nil
}

// verdict is a report judged against a step.
type verdict struct {
	counts   map[string]int
	total    int
	blocking []Vulnerability
	allowed  []Vulnerability
	expired  map[string]allowed // allow entries past their date that a finding needed
}

// judge counts the findings by severity and picks those at or above
// failOn that no unexpired allow entry accepts. An entry allows through
// the whole day its until names, in UTC.
func judge(vulns []Vulnerability, failOn string, allow map[string]allowed, now time.Time) *verdict {
	v := &verdict{counts: map[string]int{}, expired: map[string]allowed{}}
	today := now.UTC().Format(time.DateOnly)
	limit, gated := rank[failOn]
	for _, f := range vulns {
		sev := severity(f.Severity)
		v.counts[sev]++
		v.total++
		if r, ok := rank[sev]; !gated || !ok || r < limit {
			continue
		}
		a, ok := allow[strings.ToUpper(f.ID)]
		switch {
		case ok && (a.Until == "" || today <= a.Until):
			v.allowed = append(v.allowed, f)
		case ok:
			v.expired[a.ID] = a
			v.blocking = append(v.blocking, f)
		default:
			v.blocking = append(v.blocking, f)
		}
	}
	order := func(a, b Vulnerability) int {
		if d := rank[severity(b.Severity)] - rank[severity(a.Severity)]; d != 0 {
			return d
		}
		if c := strings.Compare(a.ID, b.ID); c != 0 {
			return c
		}
		return strings.Compare(a.Package, b.Package)
	}
	slices.SortFunc(v.blocking, order)
	slices.SortFunc(v.allowed, order)
	return v
}

func (v *verdict) outputs() map[string]string {
	out := map[string]string{"total": strconv.Itoa(v.total)}
	for _, s := range []string{"critical", "high", "medium", "low", "unknown"} {
		out[s] = strconv.Itoa(v.counts[s])
	}
	return out
}

func (v *verdict) summary() string {
	return fmt.Sprintf("%d critical, %d high, %d medium, %d low, %d unknown (%d in all)",
		v.counts["critical"], v.counts["high"], v.counts["medium"], v.counts["low"], v.counts["unknown"], v.total)
}

// write logs the counts, what was allowed, the expired allow entries and a
// table of the blocking findings with the versions that fix them.
func (v *verdict) write(w io.Writer, rep *Report) {
	by := ""
	if rep.Scanner != nil && rep.Scanner.Name != "" {
		by = fmt.Sprintf(" by %s %s", rep.Scanner.Name, rep.Scanner.Version)
	}
	fmt.Fprintf(w, "sluice: scanned%s: %s\n", by, v.summary())
	for _, f := range v.allowed {
		fmt.Fprintf(w, "sluice: allowed %s in %s %s (%s)\n", f.ID, f.Package, f.Version, strings.ToLower(f.Severity))
	}
	for _, id := range slices.Sorted(maps.Keys(v.expired)) {
		a := v.expired[id]
		fmt.Fprintf(w, "sluice: the allow entry for %s expired after %s; it no longer allows the finding (renew until, or fix it)\n", a.ID, a.Until)
	}
	if len(v.blocking) == 0 {
		return
	}
	fmt.Fprintf(w, "sluice: %d blocking finding(s):\n", len(v.blocking))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPACKAGE\tINSTALLED\tFIXED IN\tSEVERITY")
	for _, f := range v.blocking {
		fix := f.FixVersion
		if fix == "" {
			fix = "(no fix yet)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.ID, f.Package, f.Version, fix, strings.ToLower(f.Severity))
	}
	tw.Flush()
}

// failure is the step's error when findings block it.
func (v *verdict) failure(failOn string) string {
	var ids []string
	for _, f := range v.blocking {
		if !slices.Contains(ids, f.ID) {
			ids = append(ids, f.ID)
		}
	}
	if len(ids) > 10 {
		ids = append(ids[:10], fmt.Sprintf("and %d more", len(ids)-10))
	}
	return fmt.Sprintf("%d finding(s) at or above %s are not allowed: %s; upgrade the packages to the fixed versions listed in the log, or accept a finding with an allow block (id, until, reason)",
		len(v.blocking), failOn, strings.Join(ids, ", "))
}
