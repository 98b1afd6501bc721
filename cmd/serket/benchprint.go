package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/serket-go/serket/bench"
	"github.com/serket-go/serket/bench/fusionbench"
	"github.com/serket-go/serket/bench/loadbench"
)

// reportBench prints res as a table (print), or as indented JSON, then
// checks it: a run that was not sound (a lost reply, an unmatched round
// trip) fails the command after its figures are out.
func reportBench(w io.Writer, res any, asJSON bool, print func(io.Writer) error, check func() error) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else if err := print(w); err != nil {
		return err
	}
	return check()
}

// table is a right-aligned table: a head line, then a label and cells a row.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, head string) *table {
	t := &table{tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)}
	fmt.Fprintln(t.tw, head)
	return t
}

func (t *table) row(label string, cells ...string) {
	fmt.Fprintf(t.tw, "%s\t%s\t\n", label, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// latencyRows adds a row for each of p50, p90, p99, max and mean, a column
// per latency, in unit ("ms" or "µs"); with ratio, a last column of the
// first over the second.
func latencyRows(t *table, unit string, ratio bool, lats ...bench.Latency) {
	scale, format := time.Millisecond, "%.3f"
	if unit == "µs" {
		scale, format = time.Microsecond, "%.1f"
	}
	for _, r := range []struct {
		label string
		of    func(l bench.Latency) time.Duration
	}{
		{"p50", func(l bench.Latency) time.Duration { return l.P50 }},
		{"p90", func(l bench.Latency) time.Duration { return l.P90 }},
		{"p99", func(l bench.Latency) time.Duration { return l.P99 }},
		{"max", func(l bench.Latency) time.Duration { return l.Max }},
		{"mean", func(l bench.Latency) time.Duration { return l.Mean }},
	} {
		var cells []string
		for _, l := range lats {
			cells = append(cells, fmt.Sprintf(format, float64(r.of(l))/float64(scale)))
		}
		if ratio && len(lats) == 2 {
			cell := ""
			if x := bench.Ratio(r.of(lats[0]), r.of(lats[1])); x > 0 {
				cell = fmt.Sprintf("%.2f×", x)
			}
			cells = append(cells, cell)
		}
		t.row(fmt.Sprintf("latency %s (%s)", r.label, unit), cells...)
	}
}

// printLoad writes the result as a table.
func printLoad(w io.Writer, r *loadbench.Result) error {
	fmt.Fprintf(w, "serket bench load: %d clients on %d connections, pipeline %s on %s: %s\n", r.Clients, r.Conns, r.Pipeline, r.Target, r.Setup)
	to := strings.Join(r.To, "+")
	if to == "" {
		to = "nothing decoded (fusion only)"
	}
	from := strings.Join(r.From, "+")
	if from == "" {
		from = "no observations (the prior)"
	}
	fmt.Fprintf(w, "requests: %s → %s; %d distinct, %d bytes per request (mean)\n", from, to, r.Items, r.RequestBytes)
	fmt.Fprintf(w, "warm-up: %.1f s, %d sent, %d ok, %d errors, %d lost (not counted below)\n\n", r.Warmup.Seconds, r.Warmup.Sent, r.Warmup.OK, r.Warmup.Errors, r.Warmup.Lost)
	cols := []*loadbench.Phase{&r.Inference}
	head := "\tinference\t"
	if r.Baseline != nil {
		cols, head = append(cols, r.Baseline), head+"raw NATS echo\t"
	}
	t := newTable(w, head)
	row := func(label string, f func(p *loadbench.Phase) string) {
		var cells []string
		for _, p := range cols {
			cells = append(cells, f(p))
		}
		t.row(label, cells...)
	}
	row("window (s)", func(p *loadbench.Phase) string { return fmt.Sprintf("%.2f", p.Seconds) })
	row("sent", func(p *loadbench.Phase) string { return fmt.Sprint(p.Sent) })
	row("replied ok", func(p *loadbench.Phase) string { return fmt.Sprint(p.OK) })
	row("error replies", func(p *loadbench.Phase) string { return fmt.Sprint(p.Errors) })
	row("lost (timed out)", func(p *loadbench.Phase) string { return fmt.Sprint(p.Lost) })
	row("throughput (ok/s)", func(p *loadbench.Phase) string { return fmt.Sprintf("%.1f", p.PerSec) })
	lats := []bench.Latency{r.Inference.Latency}
	if r.Baseline != nil {
		lats = append(lats, r.Baseline.Latency)
	}
	latencyRows(t, "ms", false, lats...)
	if err := t.flush(); err != nil {
		return err
	}
	if r.P50Ratio > 0 {
		fmt.Fprintf(w, "p50 serket/raw: %.1f×\n", r.P50Ratio)
	}
	for _, ph := range []struct {
		name string
		p    *loadbench.Phase
	}{{"warm-up", &r.Warmup}, {"inference", &r.Inference}, {"baseline", r.Baseline}} {
		if ph.p != nil {
			printKinds(w, ph.name+" error", ph.p.ErrorKinds)
			printKinds(w, ph.name+" lost", ph.p.LostKinds)
		}
	}
	if err := printServer(w, r.Server); err != nil {
		return err
	}
	if r.Check() != nil {
		fmt.Fprintf(w, "\naccounting: FAILED\n")
		return nil
	}
	fmt.Fprintf(w, "\naccounting: every request sent was answered (sent = ok + errors + lost, lost = 0)")
	if r.ServerRequests >= 0 {
		fmt.Fprintf(w, "; the integrator counted %d requests, %d sent", r.ServerRequests, r.Warmup.Sent+r.Inference.Sent)
	}
	fmt.Fprintln(w)
	return nil
}

func printKinds(w io.Writer, what string, kinds map[string]int) {
	for _, k := range sortedKeys(kinds) {
		fmt.Fprintf(w, "%s: %d× %s\n", what, kinds[k], k)
	}
}

// printServer writes the endpoints' own counters.
func printServer(w io.Writer, eps []loadbench.Endpoint) error {
	if len(eps) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nserver side, warm-up and inference window ($SRV.STATS):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "service\tendpoint\trequests\terrors\tmean (ms)\tbusy\t")
	for _, e := range eps {
		if e.Integrator() {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t(on workers)\t\t\n", e.Service, e.Endpoint, e.Requests, e.Errors)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.3f\t%.0f%%\t\n", e.Service, e.Endpoint, e.Requests, e.Errors, e.MeanMs, 100*e.Busy)
	}
	return tw.Flush()
}

// printFusion writes the result as tables.
func printFusion(w io.Writer, r *fusionbench.Result) error {
	fmt.Fprintf(w, "serket bench fusion: embedded nats-server on %s (TCP loopback); the integrator, each module and each side of the raw echo on its own connection, as separate processes would be (all in this one process: %d CPUs, GOMAXPROCS %d)\n", r.Server, r.CPUs, r.GOMAXPROCS)
	if r.LoadBefore != "" {
		fmt.Fprintf(w, "load average (1, 5, 15 min): %s at the start, %s at the end\n", r.LoadBefore, r.LoadAfter)
	}
	rt := r.RoundTrip
	fmt.Fprintf(w, "\nround trip, latent %d: posterior (%d bytes) → integrator fuses (MinPeriod 0) → belief (%d bytes) → the module decodes the one naming its posterior;\n", rt.Latent, rt.PosteriorBytes, rt.BeliefBytes)
	fmt.Fprintf(w, "raw: NATS request-reply of %d bytes to an echo responder; %d of each, one in flight, interleaved in blocks of %d after one block of each not counted\n\n", rt.PosteriorBytes, rt.N, rt.Block)
	t := newTable(w, "\tserket fusion\traw NATS\tserket/raw\t")
	t.row("matched", fmt.Sprintf("%d/%d", rt.Serket.OK, rt.Serket.Sent), fmt.Sprintf("%d/%d", rt.Raw.OK, rt.Raw.Sent), "")
	latencyRows(t, "µs", true, rt.Serket.Latency, rt.Raw.Latency)
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "p50 ratio serket/raw %.2f×, p99 ratio %.2f×\n", rt.P50Ratio, rt.P99Ratio)
	if len(r.Throughput) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nstreaming fusion throughput: each module in a closed loop (publish a posterior, wait for a belief naming it, publish the next),\n")
	fmt.Fprintf(w, "so at most one posterior per module is in flight, nothing queues, and the integrator sets the pace; rates are its own counters,\n")
	fmt.Fprintf(w, "each cell over %d slices of %v (a fresh integrator and modules each, after %v of warm-up) taken round-robin over the cells\n\n", r.Slices, r.Slice, fusionbench.Warmup(r.Slice))
	t = newTable(w, "modules\tlatent\tbeliefs/s\tposteriors/s\tposteriors/belief\tµs/belief\tstalls\trefused\t")
	for _, c := range r.Throughput {
		t.row(fmt.Sprint(c.Modules), fmt.Sprint(c.Latent), fmt.Sprintf("%.0f", c.BeliefsPerSec), fmt.Sprintf("%.0f", c.PosteriorsPerSec),
			fmt.Sprintf("%.2f", c.PerBelief), fmt.Sprintf("%.1f", c.UsPerBelief), fmt.Sprint(c.Stalls), fmt.Sprint(c.Refused))
	}
	if err := t.flush(); err != nil {
		return err
	}
	printGrowth(w, r.Growth)
	return nil
}

// printGrowth says how the cost grows per doubling of what the table varies.
func printGrowth(w io.Writer, g *fusionbench.Growth) {
	if g == nil {
		return
	}
	per := func(exp float64) string { return fmt.Sprintf("×%.2f", math.Exp2(exp)) }
	var parts []string
	if g.Latents {
		parts = append(parts, fmt.Sprintf("per doubling of the latent, time per belief %s and per posterior %s (latent^%.2f, ^%.2f)",
			per(g.BeliefLatentExp), per(g.PosteriorLatentExp), g.BeliefLatentExp, g.PosteriorLatentExp))
	}
	if g.Modules {
		parts = append(parts, fmt.Sprintf("per doubling of the modules, time per belief %s and per posterior %s (modules^%.2f, ^%.2f)",
			per(g.BeliefModulesExp), per(g.PosteriorModulesExp), g.BeliefModulesExp, g.PosteriorModulesExp))
	}
	fmt.Fprintf(w, "cost growth (least-squares fit over the table): %s\n", strings.Join(parts, ";\n  "))
}
