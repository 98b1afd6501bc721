package dataset

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress reports Prepare's phases: a bar per phase on a terminal, one
// line per phase with its timing on anything else, nothing to a nil writer.
type progress struct {
	w     io.Writer
	tty   bool
	mu    sync.Mutex
	phase string
	start time.Time
	bar   *progressbar.ProgressBar
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(interface{ Fd() uintptr }); ok {
		p.tty = term.IsTerminal(int(f.Fd()))
	}
	return p
}

// begin starts a phase of total steps (0: unknown, no bar).
func (p *progress) begin(phase string, total int) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.phase, p.start, p.bar = phase, time.Now(), nil
	if p.tty && total > 0 {
		p.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetDescription(phase),
			progressbar.OptionSetWidth(30),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
	}
}

// set reports done of total steps of the current phase; safe to call from
// several goroutines.
func (p *progress) set(done, total int) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		if p.bar.GetMax() != total {
			p.bar.ChangeMax(total)
		}
		p.bar.Set(done)
	}
}

// end closes the phase with a one-line summary.
func (p *progress) end(summary string) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		p.bar.Finish()
		p.bar = nil
	}
	fmt.Fprintf(p.w, "%s: %s (%v)\n", p.phase, summary, time.Since(p.start).Round(time.Millisecond))
}
