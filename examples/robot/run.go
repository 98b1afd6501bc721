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

// sensor is one of the robot's sensors; typ is its messages' content type.
type sensor struct{ subject, module, typ string }

// The robot's sensors: the NATS subject each publishes on and the module
// that listens to it.
var sensors = []sensor{
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
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	url := cfg.NATS
	if url == "" {
		// The whole pipeline in this process, from the checkpoints.
		var stop func()
		if url, stop, err = servePipeline(ctx, cfg); err != nil {
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

	w, err := newWorld(ctx, cfg)
	if err != nil {
		return nil, err
	}
	r := newRobot(cfg, nc, w)
	// The world's clock starts before the robot listens: the handlers read
	// it, and a pipeline already running may say a belief at once.
	w.start = time.Now()
	unsubscribe, err := r.listen()
	if err != nil {
		return nil, err
	}
	defer unsubscribe()

	say("robot: camera %.1f Hz, microphone %.1f Hz, keyboard %.1f Hz, jitter %.0f%%, dropout %.0f%%, a new object every %v, for %v",
		cfg.CameraHz, cfg.MicHz, cfg.KeyboardHz, 100*cfg.Jitter, 100*cfg.Dropout, cfg.Dwell, cfg.Duration)
	r.sense(ctx)
	return r.result(), nil
}

// withDefaults fills in what cfg leaves 0 and refuses a run that could not
// pace its sensors or its objects.
func (cfg Config) withDefaults() (Config, error) {
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
		return cfg, errors.New("robot: durations and rates must be positive")
	}
	return cfg, nil
}

// servePipeline runs the whole pipeline in this process, from the
// checkpoints: an embedded NATS server; the vision, audio and language
// modules, each streaming from its sensor's subject; the integrator fusing
// their posteriors within cfg.Slop; and the language module saying each
// belief. stop shuts it all down.
func servePipeline(ctx context.Context, cfg Config) (url string, stop func(), err error) {
	srv, err := bus.StartServer(bus.ServerConfig{Host: "127.0.0.1"})
	if err != nil {
		return "", nil, err
	}
	defer func() {
		if err != nil {
			srv.Shutdown()
		}
	}()
	url = srv.ClientURL()
	m, err := fmnist3.Open(cfg.Data, cfg.Latent, cfg.Hidden)
	if err != nil {
		return "", nil, err
	}
	if err := m.Restore(cfg.Checkpoint); err != nil {
		return "", nil, fmt.Errorf("robot: %w (train a model first: bin/serket train, or make demo and --checkpoint out/demo/run)", err)
	}
	opts := map[string]module.Options{}
	for _, s := range sensors {
		opts[s.module] = module.Options{Sensors: []string{s.subject}, SensorType: s.typ}
	}
	o := opts[dataset.Language]
	o.SayBeliefs = true
	opts[dataset.Language] = o
	stopServing, err := m.Serve(ctx, url, opts, &integrator.Config{Stream: integrator.StreamConfig{Slop: cfg.Slop}})
	if err != nil {
		return "", nil, err
	}
	return url, func() { stopServing(); srv.Shutdown() }, nil
}

// robot is one run: the sensors publishing what it senses of the world, and
// the figures kept from what the pipeline answers.
type robot struct {
	cfg   Config
	nc    *nats.Conn
	world *world

	// The sensors' goroutines and the subscriptions' callbacks share these.
	mu     sync.Mutex
	res    Result
	sentAt map[string]map[int64]time.Time // module → sensor time → when sent
}

func newRobot(cfg Config, nc *nats.Conn, w *world) *robot {
	r := &robot{cfg: cfg, nc: nc, world: w,
		res:    Result{Sent: map[string]int{}, Dropped: map[string]int{}},
		sentAt: map[string]map[int64]time.Time{},
	}
	for _, s := range sensors {
		r.sentAt[s.module] = map[int64]time.Time{}
	}
	return r
}

// listen follows the beliefs and what the language module says of them,
// and returns once the server has both subscriptions, so that no answer
// to the first sensor message is missed.
func (r *robot) listen() (unsubscribe func(), err error) {
	subj, _ := bus.NewSubjects("")
	bsub, err := r.nc.Subscribe(subj.Belief(), r.onBelief)
	if err != nil {
		return nil, err
	}
	ssub, err := r.nc.Subscribe(subj.Said(dataset.Language), r.onSaid)
	if err != nil {
		bsub.Unsubscribe()
		return nil, err
	}
	unsubscribe = func() { ssub.Unsubscribe(); bsub.Unsubscribe() }
	if err := r.nc.Flush(); err != nil {
		unsubscribe()
		return nil, err
	}
	return unsubscribe, nil
}

// onBelief measures latency: the first belief each sensor message appears
// in. A source's sensor time is the belief's time less the source's age.
func (r *robot) onBelief(m *nats.Msg) {
	got := time.Now()
	var b bus.Belief
	if bus.UnmarshalFrom(m.Subject, m.Data, &b, bus.Expect{Latent: r.cfg.Latent}) != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, src := range b.Sources {
		t := b.Time - src.AgeNs
		if sent, ok := r.sentAt[src.Module][t]; ok {
			r.res.Latency = append(r.res.Latency, got.Sub(sent))
			delete(r.sentAt[src.Module], t)
		}
	}
}

// onSaid scores recognition: what the language module says of each belief,
// against the object in view at the belief's time.
func (r *robot) onSaid(m *nats.Msg) {
	var d bus.DecodeReply
	if bus.UnmarshalFrom(m.Subject, m.Data, &d, bus.Expect{}) != nil || len(d.Outputs) != 1 {
		return
	}
	bt, err := strconv.ParseInt(m.Header.Get(bus.HeaderTime), 10, 64)
	if err != nil {
		return
	}
	class, since := r.world.inView(time.Unix(0, bt))
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Beliefs++
	if since < time.Second {
		return // the beliefs still catch up with a new object
	}
	r.res.Scored++
	if dataset.ClassOfCaption(string(d.Outputs[0].Data)) == class {
		r.res.Correct++
	}
}

// sense runs every sensor, each on its own goroutine, for cfg.Duration.
func (r *robot) sense(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Duration)
	defer cancel()
	var wg sync.WaitGroup
	for i, s := range sensors {
		hz := []float64{r.cfg.CameraHz, r.cfg.MicHz, r.cfg.KeyboardHz}[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.stream(ctx, s, hz, rand.New(rand.NewPCG(r.cfg.Seed, uint64(i))))
		}()
	}
	wg.Wait()
	r.nc.Flush()
}

// stream publishes what sensor s senses about hz times a second, with
// jitter and dropouts, until ctx is done or a publish fails.
func (r *robot) stream(ctx context.Context, s sensor, hz float64, rng *rand.Rand) {
	period := time.Duration(float64(time.Second) / hz)
	for {
		wait := time.Duration(float64(period) * (1 + r.cfg.Jitter*(2*rng.Float64()-1)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait): // the sensor's own clock
		}
		if rng.Float64() < r.cfg.Dropout {
			r.mu.Lock()
			r.res.Dropped[s.subject]++
			r.mu.Unlock()
			continue
		}
		if err := r.publish(s, rng); err != nil {
			return
		}
	}
}

// publish sends one message of sensor s as serket's modules take it: the
// content type, and the time sensed, which the posteriors and beliefs
// carry on.
func (r *robot) publish(s sensor, rng *rand.Rand) error {
	now := time.Now()
	class, _ := r.world.inView(now)
	msg := nats.NewMsg(s.subject)
	msg.Data = r.world.observe(s.module, class, rng)
	msg.Header.Set(bus.HeaderContentType, s.typ)
	msg.Header.Set(bus.HeaderTime, strconv.FormatInt(now.UnixNano(), 10))
	r.mu.Lock()
	r.sentAt[s.module][now.UnixNano()] = now
	r.res.Sent[s.subject]++
	r.mu.Unlock()
	return r.nc.PublishMsg(msg)
}

// result is a copy of the figures with the latencies sorted: the
// subscriptions may still add to r's own.
func (r *robot) result() *Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	slices.Sort(r.res.Latency)
	out := r.res
	out.Latency = slices.Clone(r.res.Latency)
	return &out
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
