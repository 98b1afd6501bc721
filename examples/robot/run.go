package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/dataset/speech"
	"github.com/serket-go/serket/integrator"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/fmnist3"
)

// Config is one run of the robot.
type Config struct {
	NATS, Checkpoint, Data      string
	Latent, Hidden              int // of the checkpoints; 64 and 512 when 0
	Duration, Dwell             time.Duration
	CameraHz, MicHz, KeyboardHz float64
	Jitter, Dropout             float64
	Seed                        uint64
	Slop                        time.Duration // fusion window; 1 s when 0
}

// The robot's sensors: the NATS subject each publishes on and the module
// that listens to it.
var sensors = []struct{ subject, module, typ string }{
	{"robot.camera", dataset.Vision, "image/png"},
	{"robot.mic", dataset.Audio, "audio/wav"},
	{"robot.keyboard", dataset.Language, "text/plain"},
}

// Result is what a run measured.
type Result struct {
	Sent, Dropped   map[string]int  // per sensor
	Beliefs, Scored int             // beliefs said; scored ones (at least a second into a view)
	Correct         int             // of the scored, naming the object in view
	Latency         []time.Duration // sensor message → first belief it is in, sorted
}

// Run runs the robot for cfg.Duration and scores the pipeline's beliefs.
func Run(ctx context.Context, cfg Config, say func(string, ...any)) (*Result, error) {
	if cfg.Latent == 0 {
		cfg.Latent = 64
	}
	if cfg.Hidden == 0 {
		cfg.Hidden = 512
	}
	if cfg.Slop == 0 {
		cfg.Slop = time.Second
	}
	if cfg.Dwell <= 0 || cfg.Duration <= 0 || cfg.CameraHz <= 0 || cfg.MicHz <= 0 || cfg.KeyboardHz <= 0 {
		return nil, errors.New("robot: durations and rates must be positive")
	}
	url := cfg.NATS
	if url == "" {
		// The whole pipeline in this process, from the checkpoints.
		srv, err := bus.StartServer(bus.ServerConfig{Host: "127.0.0.1"})
		if err != nil {
			return nil, err
		}
		defer srv.Shutdown()
		url = srv.ClientURL()
		m, err := fmnist3.Open(cfg.Data, cfg.Latent, cfg.Hidden)
		if err != nil {
			return nil, err
		}
		if err := m.Restore(cfg.Checkpoint); err != nil {
			return nil, fmt.Errorf("robot: %w (train a model first: bin/serket train, or make demo and --checkpoint out/demo/run)", err)
		}
		opts := map[string]module.Options{}
		for _, s := range sensors {
			opts[s.module] = module.Options{Sensors: []string{s.subject}, SensorType: s.typ}
		}
		o := opts[dataset.Language]
		o.SayBeliefs = true
		opts[dataset.Language] = o
		stop, err := m.Serve(ctx, url, opts, &integrator.Config{Stream: integrator.StreamConfig{Slop: cfg.Slop}})
		if err != nil {
			return nil, err
		}
		defer stop()
		say("pipeline: vision, audio and language modules and the integrator on %s (in this process), model %s", url, cfg.Checkpoint)
	}
	nc, err := bus.Connect(bus.ConnConfig{URL: url, Name: "robot", Wait: 10 * time.Second})
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	subj, _ := bus.NewSubjects("")

	w, err := newWorld(ctx, cfg)
	if err != nil {
		return nil, err
	}
	res := &Result{Sent: map[string]int{}, Dropped: map[string]int{}}
	var mu sync.Mutex
	sentAt := map[string]map[int64]time.Time{} // module → sensor time → when sent
	for _, s := range sensors {
		sentAt[s.module] = map[int64]time.Time{}
	}
	// Latency: the first belief each sensor message appears in.
	bsub, err := nc.Subscribe(subj.Belief(), func(m *nats.Msg) {
		got := time.Now()
		var b bus.Belief
		if bus.UnmarshalFrom(m.Subject, m.Data, &b, bus.Expect{Latent: cfg.Latent}) != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, src := range b.Sources {
			t := b.Time - src.AgeNs
			if sent, ok := sentAt[src.Module][t]; ok {
				res.Latency = append(res.Latency, got.Sub(sent))
				delete(sentAt[src.Module], t)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	defer bsub.Unsubscribe()
	// Recognition: what the language module says of each belief.
	ssub, err := nc.Subscribe(subj.Said(dataset.Language), func(m *nats.Msg) {
		var r bus.DecodeReply
		if bus.UnmarshalFrom(m.Subject, m.Data, &r, bus.Expect{}) != nil || len(r.Outputs) != 1 {
			return
		}
		bt, err := strconv.ParseInt(m.Header.Get(bus.HeaderTime), 10, 64)
		if err != nil {
			return
		}
		class, since := w.inView(time.Unix(0, bt))
		mu.Lock()
		defer mu.Unlock()
		res.Beliefs++
		if since < time.Second {
			return // the beliefs still catch up with a new object
		}
		res.Scored++
		if dataset.ClassOfCaption(string(r.Outputs[0].Data)) == class {
			res.Correct++
		}
	})
	if err != nil {
		return nil, err
	}
	defer ssub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		return nil, err
	}

	say("robot: camera %.1f Hz, microphone %.1f Hz, keyboard %.1f Hz, jitter %.0f%%, dropout %.0f%%, a new object every %v, for %v",
		cfg.CameraHz, cfg.MicHz, cfg.KeyboardHz, 100*cfg.Jitter, 100*cfg.Dropout, cfg.Dwell, cfg.Duration)
	rctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	w.start = time.Now()
	var wg sync.WaitGroup
	for i, s := range sensors {
		hz := []float64{cfg.CameraHz, cfg.MicHz, cfg.KeyboardHz}[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(i)))
			period := time.Duration(float64(time.Second) / hz)
			for {
				wait := time.Duration(float64(period) * (1 + cfg.Jitter*(2*rng.Float64()-1)))
				select {
				case <-rctx.Done():
					return
				case <-time.After(wait): // the sensor's own clock
				}
				if rng.Float64() < cfg.Dropout {
					mu.Lock()
					res.Dropped[s.subject]++
					mu.Unlock()
					continue
				}
				now := time.Now()
				class, _ := w.inView(now)
				msg := nats.NewMsg(s.subject)
				msg.Data = w.observe(s.module, class, rng)
				msg.Header.Set(bus.HeaderContentType, s.typ)
				msg.Header.Set(bus.HeaderTime, strconv.FormatInt(now.UnixNano(), 10))
				mu.Lock()
				sentAt[s.module][now.UnixNano()] = now
				res.Sent[s.subject]++
				mu.Unlock()
				if err := nc.PublishMsg(msg); err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	nc.Flush()
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(res.Latency)
	out := *res
	out.Latency = slices.Clone(res.Latency)
	return &out, nil
}

// world is what the robot can see, hear and read: test images, spoken
// class names in voices never heard in training, and captions, of the
// object in view.
type world struct {
	start  time.Time
	dwell  time.Duration
	order  []int // the class in view during each dwell
	images [dataset.NumClasses][][]byte
	speech [dataset.NumClasses][]byte
}

func newWorld(ctx context.Context, cfg Config) (*world, error) {
	w := &world{dwell: cfg.Dwell}
	rng := rand.New(rand.NewPCG(cfg.Seed, 99))
	for range int(cfg.Duration/cfg.Dwell) + 2 {
		w.order = append(w.order, rng.IntN(dataset.NumClasses))
	}
	fm, err := dataset.LoadFashionMNIST(dataset.FashionMNISTDir)
	if err != nil {
		return nil, err
	}
	for i := 0; i < fm.Test.N && i < 2000; i++ {
		c := int(fm.Test.Labels[i])
		if len(w.images[c]) >= 20 {
			continue
		}
		img := image.NewGray(image.Rect(0, 0, fm.Test.Cols, fm.Test.Rows))
		copy(img.Pix, fm.Test.Image(i))
		var b bytes.Buffer
		if err := png.Encode(&b, img); err != nil {
			return nil, err
		}
		w.images[c] = append(w.images[c], b.Bytes())
	}
	_, test := speech.Voices()
	for c := range dataset.NumClasses {
		s, err := speech.Synthesize(ctx, dataset.SpokenNames[c], test[rng.IntN(len(test))], 16000)
		if err != nil {
			return nil, err
		}
		var b bytes.Buffer
		if err := speech.WriteWAV(&b, s, 16000); err != nil {
			return nil, err
		}
		w.speech[c] = b.Bytes()
	}
	return w, nil
}

// inView returns the class in view at t and how long it has been.
func (w *world) inView(t time.Time) (class int, since time.Duration) {
	d := max(t.Sub(w.start), 0)
	k := min(int(d/w.dwell), len(w.order)-1)
	return w.order[k], d - time.Duration(k)*w.dwell
}

func (w *world) observe(module string, class int, rng *rand.Rand) []byte {
	switch module {
	case dataset.Vision:
		imgs := w.images[class]
		return imgs[rng.IntN(len(imgs))]
	case dataset.Audio:
		return w.speech[class]
	}
	return []byte(dataset.Caption(class, rng))
}

// Print writes the run's figures.
func (r *Result) Print(w io.Writer) {
	for _, s := range sensors {
		fmt.Fprintf(w, "%-15s sent %4d, dropped %3d\n", s.subject, r.Sent[s.subject], r.Dropped[s.subject])
	}
	if n := len(r.Latency); n > 0 {
		q := func(p float64) time.Duration {
			return r.Latency[min(int(p*float64(n)), n-1)].Round(10 * time.Microsecond)
		}
		fmt.Fprintf(w, "sensor → belief latency over %d messages: p50 %v, p90 %v, p99 %v, max %v\n", n, q(0.5), q(0.9), q(0.99), r.Latency[n-1].Round(10*time.Microsecond))
	}
	acc := 0.0
	if r.Scored > 0 {
		acc = float64(r.Correct) / float64(r.Scored)
	}
	fmt.Fprintf(w, "beliefs said: %d; recognition accuracy %.3f over the %d said at least 1 s into a view (chance 0.1)\n", r.Beliefs, acc, r.Scored)
}
