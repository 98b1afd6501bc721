package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/launch"
	"github.com/serket-go/serket/modules/fmnist3"
)

// The robot runs against an (untrained) model for a few seconds: every
// sensor's messages become posteriors, beliefs are fused and said, most
// messages' latency is measured, and beliefs said a second or more into a
// view are scored (an accuracy that is a fraction).
func TestRobot(t *testing.T) {
	data := datasettest.Dir(t)
	m, err := fmnist3.Open(data, 64, 32)
	if err != nil {
		t.Fatal(err)
	}
	ckpt := filepath.Join(t.TempDir(), "model")
	if err := m.Save(ckpt); err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), Config{Checkpoint: ckpt, Data: data, Hidden: 32, Duration: 3 * time.Second, Dwell: 2 * time.Second,
		CameraHz: 20, MicHz: 5, KeyboardHz: 5, Jitter: 0.3, Dropout: 0.2, Seed: 1}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	sent := 0
	for _, s := range sensors {
		if res.Sent[s.subject] == 0 {
			t.Errorf("%s sent nothing", s.subject)
		}
		sent += res.Sent[s.subject]
	}
	t.Logf("sent %d, %d latencies, %d beliefs said, %d of %d scored right", sent, len(res.Latency), res.Beliefs, res.Correct, res.Scored)
	if res.Beliefs == 0 || len(res.Latency) < sent/2 || res.Scored == 0 || res.Correct > res.Scored {
		t.Fatalf("result %+v", res)
	}
}

// The pipeline file beside the example is valid and streams every sensor.
func TestRobotPipelineFile(t *testing.T) {
	p, err := launch.Load("pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sensors {
		found := false
		for _, m := range p.Modules {
			if m.Name == s.module && len(m.Sensors) == 1 && m.Sensors[0] == s.subject && m.SensorType == s.typ {
				found = true
			}
		}
		if !found {
			t.Errorf("no module %s streaming %s (%s) in pipeline.yaml", s.module, s.subject, s.typ)
		}
	}
}
