package integrator_test

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/toy"
)

// Streaming perception end to end: two toy modules turn their sensors'
// messages into timestamped posteriors, the integrator fuses them into
// beliefs naming both, and a third module says each belief. A bad sensor
// message is counted by its module; a flood is absorbed (latest wins) and
// the newest observation still gets through.
func TestStreamingPerception(t *testing.T) {
	p := startPipeline(t)
	for _, name := range []string{"left", "right", "speaker"} {
		m, err := toy.New(toy.Config{Name: name, Dim: 3, Latent: latent, DataSeed: 1})
		if err != nil {
			t.Fatal(err)
		}
		opts := module.Options{SensorType: "text/plain"}
		if name == "speaker" {
			opts.SayBeliefs = true
		} else {
			opts.Sensors = []string{"robot." + name}
		}
		p.runModule(name, m, opts)
	}
	p.waitLive("left", "right", "speaker")

	nc := p.conn("listener")
	subj, _ := bus.NewSubjects("")
	beliefs := make(chan *bus.Belief, 1024)
	said := make(chan *bus.DecodeReply, 1024)
	posts := make(chan *bus.Posterior, 100000)
	sub := func(subject string, f func(*nats.Msg)) {
		s, err := nc.Subscribe(subject, f)
		if err != nil {
			t.Fatal(err)
		}
		s.SetPendingLimits(-1, -1)
	}
	sub(subj.Belief(), func(m *nats.Msg) {
		var b bus.Belief
		if bus.UnmarshalFrom(m.Subject, m.Data, &b, bus.Expect{Latent: latent}) == nil {
			beliefs <- &b
		}
	})
	sub(subj.Said("speaker"), func(m *nats.Msg) {
		var r bus.DecodeReply
		if bus.UnmarshalFrom(m.Subject, m.Data, &r, bus.Expect{}) == nil {
			said <- &r
		}
	})
	sub(subj.ObsPost("left"), func(m *nats.Msg) {
		var q bus.Posterior
		if bus.UnmarshalFrom(m.Subject, m.Data, &q, bus.Expect{Latent: latent}) == nil {
			posts <- &q
		}
	})
	nc.Flush()
	sensors := p.conn("robot")
	sense := func(name, data string, t time.Time) {
		m := nats.NewMsg("robot." + name)
		m.Data = []byte(data)
		m.Header.Set(bus.HeaderTime, strconv.FormatInt(t.UnixNano(), 10))
		if err := sensors.PublishMsg(m); err != nil {
			panic(err)
		}
	}
	deadline := time.After(20 * time.Second)
	sense("left", "0.1 0.2 0.3", time.Now())
	sense("right", "0.3 0.2 0.1", time.Now())
	sensors.Flush()
	for both := false; !both; {
		select {
		case b := <-beliefs:
			both = len(b.Sources) == 2 && b.Sources[0].Module == "left" && b.Sources[1].Module == "right"
		case <-deadline:
			t.Fatal("no belief from both sensors")
		}
	}
	select {
	case r := <-said:
		if len(r.Outputs) != 1 || !strings.HasPrefix(r.Outputs[0].Type, "text/plain") || r.Sender != "speaker" {
			t.Fatalf("said %+v", r)
		}
	case <-deadline:
		t.Fatal("the speaker said no belief")
	}

	// A message that does not parse is counted against the module.
	sense("left", "not numbers", time.Now())
	sensors.Flush()
	waitTrainStatus(t, p, "left", func(s statusStream) bool {
		return s.Stream.Bad == 1 && strings.Contains(s.Stream.LastBad, "robot.left")
	})

	// A flood: the newest observation's posterior is published at last.
	const n = 3000
	last := time.Now()
	for i := range n {
		last = last.Add(time.Microsecond)
		sense("left", fmt.Sprintf("%d 0 0", i), last)
	}
	sensors.Flush()
	for {
		select {
		case q := <-posts:
			if q.Time == last.UnixNano() {
				s := waitTrainStatus(t, p, "left", func(s statusStream) bool { return s.Stream.Observations == n+2 })
				t.Logf("flood of %d: %d posteriors, %d superseded", n, s.Stream.Posteriors, s.Stream.Superseded)
				if s.Stream.Posteriors+s.Stream.Superseded+s.Stream.Bad < s.Stream.Observations-1 {
					t.Fatalf("observations unaccounted for: %+v", s.Stream)
				}
				return
			}
		case <-deadline:
			t.Fatal("the newest observation of the flood never came through")
		}
	}
}

type statusStream struct {
	Stream struct {
		Observations, Posteriors, Superseded, Bad uint64
		LastBad                                   string `json:"last_bad"`
	} `json:"stream"`
}

func waitTrainStatus(t *testing.T, p *pipeline, module string, cond func(statusStream) bool) statusStream {
	t.Helper()
	nc := p.conn("status-" + module)
	subj, _ := bus.NewSubjects("")
	deadline := time.Now().Add(10 * time.Second)
	for {
		var s statusStream
		msg, err := nc.Request(subj.TrainStatus(module), nil, time.Second)
		if err == nil && json.Unmarshal(msg.Data, &s) == nil && cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's status %+v (%v)", module, s, err)
		}
		time.Sleep(10 * time.Millisecond) // polling another process's counters
	}
}
