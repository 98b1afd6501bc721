package web

import (
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
)

// trainPoint is one point of the training curves: the mean of the steps
// the integrator's report covers.
type trainPoint struct {
	Step          uint64             `json:"step"`
	Epoch         int32              `json:"epoch"`
	Progress      float64            `json:"progress"`
	ELBO          float64            `json:"elbo"`
	JointELBO     float64            `json:"joint_elbo"`
	KL            float64            `json:"kl"`
	Beta          float32            `json:"beta"`
	LogLik        map[string]float64 `json:"loglik"`
	SamplesPerSec float64            `json:"samples_per_s"`
	TimeMs        int64              `json:"t_ms"`
}

// epochPoint is an epoch's end, with its test figures if the run
// evaluated.
type epochPoint struct {
	Epoch         int32              `json:"epoch"`
	Step          uint64             `json:"step"`
	SamplesPerSec float64            `json:"samples_per_s"`
	TestELBO      *float64           `json:"test_elbo,omitempty"`
	TestKL        *float64           `json:"test_kl,omitempty"`
	TestLogLik    map[string]float64 `json:"test_loglik,omitempty"`
}

type trainStatus struct {
	Epoch    int32    `json:"epoch"`
	Epochs   int32    `json:"epochs"`
	Progress float64  `json:"progress"`
	Missing  []string `json:"missing"`
	Active   bool     `json:"active"`
}

// trainView is the train event: with Reset, the whole history; else what
// came since the last event.
type trainView struct {
	Reset  bool         `json:"reset"`
	Run    string       `json:"run"`
	Points []trainPoint `json:"points"`
	Epochs []epochPoint `json:"epochs"`
	Status *trainStatus `json:"status,omitempty"`
}

// trainBook is the curve of the latest run.
type trainBook struct {
	run              string
	points           []trainPoint
	epochs           []epochPoint
	status           *trainStatus
	lastReport       time.Time
	sentPts, sentEps int  // what the pages have
	reset            bool // they must start again: a new run, or the curve thinned
	sent             time.Time
}

// The curve keeps at most maxPoints; past that it thins its first half.
const (
	maxPoints  = 4000
	trainEvery = time.Second
	// idleAfter is how long after its last report a run is shown as no
	// longer training.
	idleAfter = 10 * time.Second
)

func newTrainBook() *trainBook { return &trainBook{} }

// add takes one of the integrator's reports.
func (b *trainBook) add(tp *bus.TrainProgress, now time.Time) {
	if tp.ID != b.run {
		*b = trainBook{run: tp.ID, reset: true}
	}
	b.lastReport = now
	b.status = &trainStatus{Epoch: tp.Epoch, Epochs: tp.Epochs, Progress: tp.Progress, Missing: slices.Sorted(maps.Keys(tp.Missed)), Active: true}
	if tp.EpochEnd {
		e := epochPoint{Epoch: tp.Epoch, Step: tp.Step, SamplesPerSec: tp.SamplesPerSec}
		if tp.Tested {
			e.TestELBO, e.TestKL, e.TestLogLik = &tp.TestELBO, &tp.TestKL, maps.Clone(tp.TestLogLik)
		}
		b.epochs = append(b.epochs, e)
		return
	}
	b.points = append(b.points, trainPoint{
		Step: tp.Step, Epoch: tp.Epoch, Progress: tp.Progress, ELBO: tp.ELBO, JointELBO: tp.JointELBO, KL: tp.KL, Beta: tp.Beta,
		LogLik: maps.Clone(tp.LogLik), SamplesPerSec: tp.SamplesPerSec, TimeMs: now.UnixMilli(),
	})
	if len(b.points) > maxPoints {
		b.thin()
	}
}

// thin drops every other point of the older half: the curve's start keeps
// its shape at half the resolution, and the pages get it again whole.
func (b *trainBook) thin() {
	half := len(b.points) / 2
	kept := b.points[:0]
	for i, p := range b.points {
		if i >= half || i%2 == 0 {
			kept = append(kept, p)
		}
	}
	b.points, b.reset = kept, true
}

// all is the whole history, or what the pages already have when sent
// is true: a page that just connected starts from the same place as the
// others, and the next event brings them all the rest.
func (b *trainBook) all(sent bool) trainView {
	pts, eps := b.points, b.epochs
	if sent {
		pts, eps = pts[:b.sentPts], eps[:b.sentEps]
		if b.reset {
			pts, eps = nil, nil
		}
	}
	return trainView{Reset: true, Run: b.run, Points: append([]trainPoint{}, pts...), Epochs: append([]epochPoint{}, eps...), Status: b.statusAt(time.Now())}
}

func (b *trainBook) statusAt(now time.Time) *trainStatus {
	if b.status == nil {
		return nil
	}
	s := *b.status
	s.Active = now.Sub(b.lastReport) < idleAfter
	return &s
}

// changed is what the pages have not had yet.
func (b *trainBook) changed(now time.Time) (trainView, bool) {
	if now.Sub(b.sent) < trainEvery {
		return trainView{}, false
	}
	if b.reset {
		b.reset, b.sent, b.sentPts, b.sentEps = false, now, len(b.points), len(b.epochs)
		return b.all(false), true
	}
	if b.sentPts == len(b.points) && b.sentEps == len(b.epochs) {
		return trainView{}, false
	}
	v := trainView{Run: b.run, Points: append([]trainPoint{}, b.points[b.sentPts:]...), Epochs: append([]epochPoint{}, b.epochs[b.sentEps:]...), Status: b.statusAt(now)}
	b.sent, b.sentPts, b.sentEps = now, len(b.points), len(b.epochs)
	return v, true
}

// onProgress takes the integrator's training reports.
func (h *Hub) onProgress(m *nats.Msg) {
	var tp bus.TrainProgress
	if err := bus.UnmarshalFrom(m.Subject, m.Data, &tp, bus.Expect{}); err != nil {
		h.refuse("progress", m.Subject, err)
		return
	}
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.train.add(&tp, now)
	h.nodes.heard("integrator", now)
	h.nodes.missed(tp.Missed)
}
