package placement

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"
)

// ErrUnsupported is Run's error where processes cannot be pinned.
var ErrUnsupported = errors.New("placement: pinning processes to CPUs needs Linux")

// Config sets a Placer.
type Config struct {
	// Every is how often loads are measured and the assignment reviewed;
	// default 500 ms (a short epoch should not run long unplaced).
	Every time.Duration
	// CPUs are the CPUs to place on; default every CPU this process may
	// run on.
	CPUs []int
	// MinLoad is the load (in CPUs) below which a process is left free;
	// default 0.25.
	MinLoad float64
	// Log gets one line per new assignment; nil logs nothing.
	Log *slog.Logger
	// OnPlace, if set, is called after each new assignment is applied,
	// with it (nil: every process free) and the loads it was made from.
	OnPlace func(plan map[string]int, loads map[string]float64)
}

// Run measures the processes pids returns (name → pid; 0 for one not
// running) every cfg.Every and pins them as Plan says until ctx is done;
// then it frees every process it pinned that still runs. A process that
// cannot be measured or pinned (it just exited) is left out of that round.
func Run(ctx context.Context, pids func() map[string]int, cfg Config) error {
	h, err := newHost()
	if err != nil {
		return err
	}
	if cfg.Every <= 0 {
		cfg.Every = 500 * time.Millisecond
	}
	if cfg.MinLoad <= 0 {
		cfg.MinLoad = 0.25
	}
	if len(cfg.CPUs) == 0 {
		if cfg.CPUs, err = h.allowed(); err != nil {
			return err
		}
	}
	p := &placer{h: h, cfg: cfg, last: map[int]sample{}, loads: map[string]float64{}}
	t := time.NewTicker(cfg.Every)
	defer t.Stop()
	defer p.free()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			p.round(pids())
		}
	}
}

// host is what the placer needs of the operating system.
type host interface {
	allowed() ([]int, error)                // the CPUs this process may run on
	cpuTime(pid int) (time.Duration, error) // every thread's of pid and of its descendants
	pin(pid int, cpus []int) error          // every thread of pid and of its descendants
}

type sample struct {
	at  time.Time
	cpu time.Duration
}

type placer struct {
	h     host
	cfg   Config
	last  map[int]sample     // by pid
	loads map[string]float64 // smoothed, by name
	plan  map[string]int     // applied
	pids  map[string]int     // what plan was applied to
}

// round measures every process once and applies a better assignment.
func (p *placer) round(pids map[string]int) {
	now := time.Now()
	seen := map[int]bool{}
	for name, pid := range pids {
		if pid <= 0 {
			delete(p.loads, name)
			continue
		}
		seen[pid] = true
		cpu, err := p.h.cpuTime(pid)
		if err != nil {
			delete(p.loads, name)
			continue
		}
		prev, ok := p.last[pid]
		p.last[pid] = sample{now, cpu}
		if !ok || now.Sub(prev.at) <= 0 {
			continue
		}
		l := float64(cpu-prev.cpu) / float64(now.Sub(prev.at))
		if old, ok := p.loads[name]; ok {
			l = (l + old) / 2 // smoothed over the last few rounds
		}
		p.loads[name] = l
	}
	for pid := range p.last {
		if !seen[pid] {
			delete(p.last, pid)
		}
	}
	next := Plan(p.loads, p.cfg.CPUs, p.cfg.MinLoad)
	if better(next, p.plan, p.loads) || restarted(p.plan, p.pids, pids) {
		p.apply(next, pids)
	}
}

// restarted reports whether a pinned process runs under another pid now.
func restarted(plan, was, now map[string]int) bool {
	for name := range plan {
		if was[name] != now[name] {
			return true
		}
	}
	return false
}

// apply pins plan's processes and frees the ones it no longer pins.
func (p *placer) apply(plan map[string]int, pids map[string]int) {
	for name := range p.plan {
		if _, still := plan[name]; !still && pids[name] > 0 {
			p.h.pin(pids[name], p.cfg.CPUs)
		}
	}
	for name, cpu := range plan {
		if err := p.h.pin(pids[name], []int{cpu}); err != nil && p.cfg.Log != nil {
			p.cfg.Log.Warn("cannot pin a process to a CPU", "process", name, "pid", pids[name], "cpu", cpu, "err", err)
		}
	}
	p.plan, p.pids = plan, maps.Clone(pids)
	loads := maps.Clone(p.loads)
	if p.cfg.Log != nil {
		p.cfg.Log.Info(describe(plan, loads))
	}
	if p.cfg.OnPlace != nil {
		p.cfg.OnPlace(maps.Clone(plan), loads)
	}
}

// free lets every process the placer pinned run anywhere again.
func (p *placer) free() {
	for name := range p.plan {
		if pid := p.pids[name]; pid > 0 {
			p.h.pin(pid, p.cfg.CPUs)
		}
	}
}

// describe is the log line of a new assignment.
func describe(plan map[string]int, loads map[string]float64) string {
	if len(plan) == 0 {
		return "placement: every process free to run on any CPU (no more busy processes than CPUs)"
	}
	s := "placement: pinned"
	for _, name := range slices.Sorted(maps.Keys(plan)) {
		s += fmt.Sprintf(" %s→cpu%d (load %.2f)", name, plan[name], loads[name])
	}
	return s
}
