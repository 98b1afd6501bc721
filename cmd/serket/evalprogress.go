package main

import (
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/serket-go/serket/eval"
)

// phaseLogEvery is how often a phase's progress is logged when there is no
// terminal to draw it on: a long phase (IWAE with --thorough takes minutes)
// must not look like a hang in a CI log.
const phaseLogEvery = 30 * time.Second

// phaseReport is the phase that draws the report, which cmd/serket itself
// runs.
const phaseReport = "report"

// phaseBars shows eval's progress: a bar per phase on a terminal, else a
// log line when a phase starts and one every phaseLogEvery; in both cases a
// log line with the phase's duration when it ends.
type phaseBars struct {
	log     *slog.Logger
	tty     io.Writer // where bars go; nil without a terminal
	bar     *progressbar.ProgressBar
	phase   string // the phase under way, "" between phases
	started time.Time
	logged  time.Time
}

func newPhaseBars(log *slog.Logger) *phaseBars {
	p := &phaseBars{log: log}
	if term.IsTerminal(int(os.Stderr.Fd())) {
		p.tty = os.Stderr
	}
	return p
}

// report is an eval progress callback (eval.Config.Progress).
func (p *phaseBars) report(e eval.Progress) {
	now := time.Now()
	if e.Phase != p.phase {
		p.begin(e, now)
	}
	switch {
	case e.Done >= e.Total:
		p.end(e, now)
	case p.bar != nil:
		p.bar.Set(e.Done)
	case now.Sub(p.logged) >= phaseLogEvery:
		p.logged = now
		p.log.Info(e.Phase, "done", e.Done, "of", e.Total, "unit", e.Unit)
	}
}

func (p *phaseBars) begin(e eval.Progress, now time.Time) {
	if p.bar != nil { // the last phase failed half-way: its bar goes
		p.bar.Exit()
	}
	p.phase, p.started, p.logged, p.bar = e.Phase, now, now, nil
	if p.tty == nil {
		p.log.Info(e.Phase+" …", "what", e.Detail, "total", e.Total, "unit", e.Unit)
		return
	}
	p.bar = progressbar.NewOptions(e.Total, progressbar.OptionSetWriter(p.tty), progressbar.OptionSetDescription(e.Phase+" ("+e.Detail+")"),
		progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish())
}

func (p *phaseBars) end(e eval.Progress, now time.Time) {
	if p.bar != nil {
		p.bar.Finish()
		p.bar = nil
	}
	p.phase = ""
	p.log.Info(e.Phase+" done", "what", e.Detail, "took", now.Sub(p.started).Round(100*time.Millisecond))
}
