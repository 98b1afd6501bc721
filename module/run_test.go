package module_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/internal/syncbuf"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/toy"
	"github.com/serket-go/serket/nn"
)

func newToy(t *testing.T) *toy.Toy {
	t.Helper()
	m, err := toy.New(toy.Config{Name: "left", Dim: 3, Latent: 2, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func server(t *testing.T) *bus.Server {
	t.Helper()
	s, err := bus.StartServer(bus.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

func TestRunRefusesAnUnusableCheckpoint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "left.ckpt")
	if err := os.WriteFile(path, []byte("SERKET-TOY\x00 truncated"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := module.Run(context.Background(), newToy(t), module.Options{Checkpoint: path, NATS: bus.ConnConfig{Server: server(t)}})
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "unusable") {
		t.Fatalf("Run with a corrupt checkpoint: %v; want an error naming the file", err)
	}
}

// TestRunSavesWhenTheIntegratorAsksAndRestores: a training module writes
// its checkpoint when the integrator of its run asks, labelled with the
// run and step, not at exit; a fresh module restores it at start and
// tells an integrator enrolling it which run and step its weights are of.
func TestRunSavesWhenTheIntegratorAsksAndRestores(t *testing.T) {
	srv := server(t)
	subj, _ := bus.NewSubjects("")
	path := filepath.Join(t.TempDir(), "sub", "left.ckpt")
	m := newToy(t)
	// Move the parameters away from their initial values.
	x, _, _ := m.LoadBatch([]uint64{1, 2})
	mu, lv := make([]float32, 4), make([]float32, 4)
	m.Encode(x, mu, lv)
	m.Learn([]float32{1, 1, 1, 1}, []float32{1, 1, 1, 1})
	m.Encode(x, mu, lv)

	ig := integratorConn(t, srv)
	run, session := bus.NewToken(), bus.NewToken()
	mustServe(t, srv, m, module.Options{Checkpoint: path, Train: true}, func() {
		if st := control(t, ig, subj, "left", bus.Control{Op: bus.OpEnrol, ID: run, Step: 7, Adopt: true}, session); st.Err != "" || st.ID != run || st.Step != 7 {
			t.Errorf("enrol: %+v", st)
		}
		if _, err := os.Stat(path); err == nil {
			t.Error("a checkpoint was written before the integrator asked")
		}
		if st := control(t, ig, subj, "left", bus.Control{Op: bus.OpSave, ID: run, Step: 7}, session); st.Err != "" || st.Step != 7 {
			t.Errorf("save: %+v", st)
		}
	})
	if l, err := module.CheckpointLabel(path); err != nil || l != (module.Label{Run: run, Step: 7}) {
		t.Fatalf("checkpoint label %v (%v), want run %s step 7", l, err, run)
	}
	if tmp, _ := filepath.Glob(path + ".tmp-*"); len(tmp) > 0 {
		t.Fatalf("temporary files left behind: %v", tmp)
	}
	// A fresh module restored from it at start encodes like the saved one
	// and says what its weights are.
	fresh := newToy(t)
	mustServe(t, srv, fresh, module.Options{Checkpoint: path, Train: true}, func() {
		if st := control(t, ig, subj, "left", bus.Control{Op: bus.OpEnrol, ID: run, Step: 9}, bus.NewToken()); st.ID != run || st.Step != 7 || st.Instance == "" {
			t.Errorf("a restored module says its weights are %+v, want run %s step 7 and its instance", st, run)
		}
	})
	got, glv := make([]float32, 4), make([]float32, 4)
	fresh.Encode(x, got, glv)
	if !slices.Equal(got, mu) || !slices.Equal(glv, lv) {
		t.Fatalf("restored module encodes %v/%v, want %v/%v", got, glv, mu, lv)
	}
	// A tool that opens the file itself (evaluation) reads it the same.
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	other := newToy(t)
	if l, err := module.RestoreFrom(other, f); err != nil || l.Run != run || l.Step != 7 {
		t.Fatalf("RestoreFrom: %v, %v", l, err)
	}
	other.Encode(x, got, glv)
	if !slices.Equal(got, mu) {
		t.Fatal("a module restored with RestoreFrom encodes otherwise")
	}
}

// TestServingModuleNeverTrains: a module not started for training hears no
// training subject at all, so a forged step, latent and expert gradient
// (the attack of issue 14: three messages claiming to be from another
// module) change neither its weights nor its checkpoint file, and it does
// not rewrite the checkpoint when it stops.
func TestServingModuleNeverTrains(t *testing.T) {
	srv := server(t)
	subj, _ := bus.NewSubjects("")
	path := filepath.Join(t.TempDir(), "left.ckpt")
	m := newToy(t)
	if err := os.WriteFile(path, checkpointOf(t, m), 0o644); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(path)
	x, _, _ := m.LoadBatch([]uint64{1, 2})
	want, wantLV := make([]float32, 4), make([]float32, 4)
	m.Encode(x, want, wantLV)

	forger, err := bus.Connect(bus.ConnConfig{Server: srv, Name: "forger"})
	if err != nil {
		t.Fatal(err)
	}
	defer forger.Close()
	ctx, cancel := context.WithCancel(context.Background())
	err = module.Run(ctx, m, module.Options{Checkpoint: path, NATS: bus.ConnConfig{Server: srv}, Ready: func(micro.Service) {
		defer cancel()
		for _, s := range []string{subj.Step(), subj.Latent(), subj.EGrad("left")} {
			if srv.GlobalAccount().SubscriptionInterest(s) {
				t.Errorf("a serving module subscribes to %s", s)
			}
		}
		forge(t, forger, subj, "left", 2, 2)
	}})
	if err != nil {
		t.Fatal(err)
	}
	got, gotLV := make([]float32, 4), make([]float32, 4)
	m.Encode(x, got, gotLV)
	if !slices.Equal(got, want) || !slices.Equal(gotLV, wantLV) {
		t.Errorf("a serving module's weights changed: it encodes %v/%v, was %v/%v", got, gotLV, want, wantLV)
	}
	after, err := os.Stat(path)
	if err != nil || !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("a serving module rewrote its checkpoint (%v)", err)
	}
	if _, err := os.Stat(path + ".prev"); err == nil {
		t.Error("a serving module left a previous generation of its checkpoint")
	}
}

// checkpointOf is m's checkpoint, as bytes.
func checkpointOf(t *testing.T, m module.Saver) []byte {
	t.Helper()
	var b strings.Builder
	if err := m.Save(&b); err != nil {
		t.Fatal(err)
	}
	return []byte(b.String())
}

// forge publishes, as module "language", a whole training step for
// module name (batch b, latent d): a step begin, its latent and an expert
// gradient.
func forge(t *testing.T, nc *nats.Conn, subj bus.Subjects, name string, b, d int) {
	t.Helper()
	forgeAs(t, nc, subj, name, b, d, bus.Header{Sender: "language"})
}

// forgeAs is forge with the given sender and session.
func forgeAs(t *testing.T, nc *nats.Conn, subj bus.Subjects, name string, b, d int, h bus.Header) {
	t.Helper()
	ones := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = 1
		}
		return v
	}
	step := &bus.StepBegin{Step: 1, Train: true, IDs: []uint64{1, 2}[:b], Plan: []bus.Term{{Subset: []string{name}, Targets: []string{name}}}}
	msgs := []struct {
		subject string
		m       bus.Message
	}{
		{subj.Step(), step},
		{subj.Latent(), &bus.Latent{Step: 1, Members: []string{name}, Z: []bus.Tensor{bus.Matrix(b, d, ones(b*d))}}},
		{subj.EGrad(name), &bus.ExpertGrad{Step: 1, DMu: bus.Matrix(b, d, ones(b*d)), DLogVar: bus.Matrix(b, d, ones(b*d))}},
	}
	step.Header = h
	msgs[1].m.(*bus.Latent).Header = h
	msgs[2].m.(*bus.ExpertGrad).Header = h
	for _, msg := range msgs {
		data, err := bus.Marshal(msg.m)
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Publish(msg.subject, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestRunRefusesABadSpec(t *testing.T) {
	m, _ := toy.New(toy.Config{Name: "ok", Dim: 1, Latent: 1})
	err := module.Run(context.Background(), badSpec{m}, module.Options{})
	if err == nil || !strings.Contains(err.Error(), "Bad Name") {
		t.Fatalf("Run with an invalid module name: %v", err)
	}
}

// TestRunRefusesAPrivateLatentItsModalityLacks: a module asked for a
// private latent (--private) whose modality keeps none does not start,
// and says which module and what was asked.
func TestRunRefusesAPrivateLatentItsModalityLacks(t *testing.T) {
	m, _ := toy.New(toy.Config{Name: "plain", Dim: 1, Latent: 1})
	err := module.Run(context.Background(), m, module.Options{Private: 4})
	if err == nil || !strings.Contains(err.Error(), "module plain") || !strings.Contains(err.Error(), "--private") {
		t.Fatalf("Run with a private latent the modality lacks: %v", err)
	}
}

type badSpec struct{ *toy.Toy }

func (b badSpec) Spec() module.Spec { s := b.Toy.Spec(); s.Name = "Bad Name"; return s }

// genToy is a toy modality whose checkpoint is an nn checkpoint of one
// number, its generation, so that Restore's errors tell damage
// (module.ErrCorruptCheckpoint) from a mismatch, as nn's do.
type genToy struct {
	*toy.Toy
	gen *nn.Param
}

func newGenToy(t *testing.T) *genToy {
	return &genToy{Toy: newToy(t), gen: &nn.Param{Name: "gen", Shape: []int{1}, W: []float32{0}, G: []float32{0}}}
}

func (m *genToy) Save(w io.Writer) error { return nn.Save(w, "gen", []*nn.Param{m.gen}, nil, nil) }

func (m *genToy) Restore(r io.Reader) error {
	_, err := nn.Load(r, "gen", []*nn.Param{m.gen}, nil)
	return err
}

// runOnce runs m with the checkpoint path until it serves, then stops it,
// and returns Run's error and log; set, if not nil, is called while it
// serves.
func runOnce(t *testing.T, srv *bus.Server, m module.Modality, path string, save float32, set func()) (error, string) {
	t.Helper()
	var log syncBuffer
	subj, _ := bus.NewSubjects("")
	err := runServing(t, srv, m, module.Options{Checkpoint: path, Train: save > 0, Logger: slog.New(slog.NewTextHandler(&log, nil))}, func() {
		if set != nil {
			set()
		}
		if save > 0 {
			ig, session := integratorConn(t, srv), bus.NewToken()
			control(t, ig, subj, "left", bus.Control{Op: bus.OpEnrol, ID: genRun, Step: uint64(save), Adopt: true}, session)
			if st := control(t, ig, subj, "left", bus.Control{Op: bus.OpSave, ID: genRun, Step: uint64(save)}, session); st.Err != "" {
				t.Errorf("save: %s", st.Err)
			}
		}
	})
	return err, log.String()
}

// genRun is the run the generations of TestRunKeepsAndFallsBackToThePreviousCheckpoint are saved in.
const genRun = "9e9e9e9e"

// TestRunKeepsAndFallsBackToThePreviousCheckpoint: every save keeps the
// checkpoint it replaces as .prev; a damaged checkpoint at start is
// logged, naming the file and the damage, and the previous generation
// restored instead; a checkpoint of another model is refused as before.
func TestRunKeepsAndFallsBackToThePreviousCheckpoint(t *testing.T) {
	srv := server(t)
	tests := []struct {
		name    string
		damage  func(t *testing.T, path string)
		wantGen float32  // the generation restored; 0: none (a fresh start or an error)
		wantErr []string // what Run's error says; nil: no error
		wantLog []string
	}{
		{"whole", func(*testing.T, string) {}, 2, nil, []string{`msg="restored checkpoint" path=PATH weights="run 9e9e9e9e step 2"`}},
		{"truncated", func(t *testing.T, path string) { resize(t, path, -5) }, 1, nil,
			[]string{"level=ERROR", "checkpoint is damaged", "path=" + "PATH ", "corrupt or truncated", "restored=PATH.prev"}},
		{"emptied", func(t *testing.T, path string) { resize(t, path, 0) }, 1, nil,
			[]string{"checkpoint is damaged", "too short", `msg="restored checkpoint" path=PATH.prev`}},
		{"flipped byte", func(t *testing.T, path string) { flipByte(t, path, -3) }, 1, nil,
			[]string{"checkpoint is damaged", "checksum mismatch", `msg="restored checkpoint" path=PATH.prev`}},
		{"both damaged", func(t *testing.T, path string) { flipByte(t, path, -3); resize(t, path+".prev", 10) }, 0,
			[]string{"PATH is unusable", "checksum mismatch", "PATH.prev is unusable", "too short"}, nil},
		{"damaged, no previous generation", func(t *testing.T, path string) { flipByte(t, path, -3); os.Remove(path + ".prev") }, 0,
			[]string{"PATH is unusable", "checksum mismatch", "no previous generation"}, nil},
		{"another model", func(t *testing.T, path string) {
			p := &nn.Param{Name: "gen", Shape: []int{2}, W: []float32{5, 5}, G: make([]float32, 2)}
			if err := nn.SaveFile(path, "gen", []*nn.Param{p}, nil, nil); err != nil {
				t.Fatal(err)
			}
		}, 0, []string{"PATH is unusable", "param gen has shape [2], want [1]"}, nil},
		{"only a previous generation", func(t *testing.T, path string) { os.Remove(path) }, 0, nil,
			[]string{"no checkpoint, starting afresh", "previous=PATH.prev"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "left.ckpt")
			fill := func(s string) string { return strings.ReplaceAll(s, "PATH", path) }
			// Two generations, saved when the integrator asked, each
			// labelled with its generation as the step.
			for _, gen := range []float32{1, 2} {
				m := newGenToy(t)
				if err, log := runOnce(t, srv, m, path, gen, func() { m.gen.W[0] = gen }); err != nil {
					t.Fatalf("%v\n%s", err, log)
				}
			}
			for file, want := range map[string]float32{path: 2, path + ".prev": 1} {
				if l, err := module.CheckpointLabel(file); err != nil || l.Step != uint64(want) {
					t.Fatalf("%s holds generation %v (%v), want %v", file, l, err, want)
				}
			}
			tt.damage(t, path)
			m := newGenToy(t)
			err, log := runOnce(t, srv, m, path, 0, nil)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("%v\n%s", err, log)
			}
			if tt.wantErr != nil && err == nil {
				t.Fatalf("Run succeeded, restoring generation %v\n%s", m.gen.W[0], log)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), fill(want)) {
					t.Errorf("error %q does not say %q", err, fill(want))
				}
			}
			for _, want := range tt.wantLog {
				if !strings.Contains(log, fill(want)) {
					t.Errorf("log does not say %q:\n%s", fill(want), log)
				}
			}
			if m.gen.W[0] != tt.wantGen {
				t.Errorf("restored generation %v, want %v", m.gen.W[0], tt.wantGen)
			}
		})
	}
}

// resize cuts the file at path to n bytes, or by -n bytes if n < 0.
func resize(t *testing.T, path string, n int64) {
	t.Helper()
	if n < 0 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	if err := os.Truncate(path, n); err != nil {
		t.Fatal(err)
	}
}

// flipByte flips a bit of the byte at offset i (from the end if i < 0).
func flipByte(t *testing.T, path string, i int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if i < 0 {
		i += len(b)
	}
	b[i] ^= 0x08
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer collects a process's or a logger's output while it runs.
type syncBuffer = syncbuf.Buffer
