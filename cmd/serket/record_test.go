package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/serket-go/serket/bus"
)

// recProc is a serket process whose output is read line by line as it
// comes, so a test can wait for a line rather than for time to pass.
type recProc struct {
	cmd   *exec.Cmd
	out   syncBuffer
	lines chan string
	done  chan error
}

func startRecProc(t *testing.T, args ...string) *recProc {
	t.Helper()
	p := &recProc{cmd: exec.Command(serketBin, args...), lines: make(chan string, 1024), done: make(chan error, 1)}
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// (The package's tests define a close of their own: no builtin close.)
	read := make(chan struct{}, 1)
	go func() {
		defer func() { read <- struct{}{} }()
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.out.Write(append(sc.Bytes(), '\n'))
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		io.Copy(io.Discard, pr)
	}()
	go func() {
		err := p.cmd.Wait()
		pw.Close()
		<-read // all of the output is in p.out
		p.done <- err
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("serket %v output:\n%s", args, p.out.String())
		}
	})
	return p
}

// waitLine waits for a line of output containing want.
func (p *recProc) waitLine(t *testing.T, want string) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case l := <-p.lines:
			if strings.Contains(l, want) {
				return
			}
		case err := <-p.done:
			p.done <- err
			t.Fatalf("serket exited (%v) before printing %q:\n%s", err, want, p.out.String())
		case <-timeout:
			t.Fatalf("serket did not print %q within 20 s:\n%s", want, p.out.String())
		}
	}
}

// wait waits for the process to exit and returns its error and output.
func (p *recProc) wait(t *testing.T) (string, error) {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		return p.out.String(), err
	case <-time.After(20 * time.Second):
		t.Fatalf("serket did not exit within 20 s:\n%s", p.out.String())
		return "", nil
	}
}

func startJetStreamServer(t *testing.T) (*bus.Server, *nats.Conn) {
	t.Helper()
	srv, err := bus.StartServer(bus.ServerConfig{JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := bus.Connect(bus.ConnConfig{URL: srv.ClientURL(), Name: "test", Wait: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return srv, nc
}

// TestRecordReplayCLI: serket record --duration captures messages with
// gaps between them; serket replay plays them into another pipeline, in
// order, with their payloads and headers and about half their gaps at
// speed 2.
func TestRecordReplayCLI(t *testing.T) {
	srv, nc := startJetStreamServer(t)
	url := srv.ClientURL()
	rec := startRecProc(t, "record", "--nats", url, "--pipeline", "rec", "--duration", "2s")
	rec.waitLine(t, "recording serket.v2.rec.> into stream SERKET_REC")

	subj, _ := bus.NewSubjects("rec")
	type msg struct {
		subject string
		data    []byte
		header  nats.Header
	}
	var sent []msg
	var first, last time.Time
	for i := 0; i < 6; i++ {
		if i > 0 {
			time.Sleep(60 * time.Millisecond) // a gap in the source: input, not synchronisation
		}
		m := msg{subj.ObsPost("vision"), []byte(fmt.Sprintf("frame %d", i)), nil}
		if i%3 == 1 {
			m = msg{subj.Belief(), []byte(fmt.Sprintf("belief %d", i)), nats.Header{"Serket-Seq": {fmt.Sprint(i)}}}
		}
		if err := nc.PublishMsg(&nats.Msg{Subject: m.subject, Data: m.data, Header: m.header}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = time.Now()
		}
		last = time.Now()
		sent = append(sent, m)
	}
	nc.Flush()
	out, err := rec.wait(t)
	if err != nil {
		t.Fatalf("serket record: %v\n%s", err, out)
	}
	t.Logf("serket record:\n%s", out)
	for _, want := range []string{`recorded 6 messages`, `into stream SERKET_REC, seq 1-6`, `serket\.v2\.rec\.obs\.post\.vision +4\n`, `serket\.v2\.rec\.belief +2\n`, `serket replay --stream SERKET_REC`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("serket record's output does not say %q:\n%s", want, out)
		}
	}

	// Replay into pipeline "copy"; a sentinel published after serket
	// replay has exited (it flushes first) arrives after every replayed
	// message.
	var (
		mu   sync.Mutex
		got  []*nats.Msg
		at   []time.Time
		done = make(chan struct{}, 1)
	)
	sub, err := nc.Subscribe("serket.v2.>", func(m *nats.Msg) {
		if m.Subject == "serket.v2.copy.end" {
			done <- struct{}{}
			return
		}
		mu.Lock()
		got, at = append(got, m), append(at, time.Now())
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	nc.Flush()
	msgOut, err := serketOut(t, "replay", "--nats", url, "--pipeline", "rec", "--pipeline-as", "copy", "--speed", "2")
	if err != nil {
		t.Fatalf("serket replay: %v\n%s", err, msgOut)
	}
	t.Logf("serket replay:\n%s", msgOut)
	nc.Publish("serket.v2.copy.end", nil)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the sentinel did not arrive")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(sent) {
		t.Fatalf("%d messages arrived, want %d\n%s", len(got), len(sent), msgOut)
	}
	for i, m := range got {
		want := strings.Replace(sent[i].subject, "serket.v2.rec.", "serket.v2.copy.", 1)
		if m.Subject != want || !bytes.Equal(m.Data, sent[i].data) || m.Header.Get("Serket-Seq") != sent[i].header.Get("Serket-Seq") {
			t.Errorf("message %d: %s %q %v, want %s %q %v", i, m.Subject, m.Data, m.Header, want, sent[i].data, sent[i].header)
		}
	}
	orig, took := last.Sub(first), at[len(at)-1].Sub(at[0])
	t.Logf("serket replay --speed 2: %v for %v of source (ratio %.3f of the scaled original)", took, orig, float64(took)/float64(orig/2))
	if took < orig*7/20 || took > orig {
		t.Errorf("replay at speed 2 took %v for %v of source: want 0.7 to 2 × %v", took, orig, orig/2)
	}
	for _, want := range []string{`replayed 6 messages`, `stream SERKET_REC, seq 1-6`, `onto pipeline copy`, `\(asked 2x\)`, `serket\.v2\.copy\.belief +2\n`} {
		if !regexp.MustCompile(want).MatchString(msgOut) {
			t.Errorf("serket replay's output does not say %q:\n%s", want, msgOut)
		}
	}
}

// TestRecordReplayInterrupt: Ctrl-C ends a recording and a replay cleanly,
// each with its summary so far.
func TestRecordReplayInterrupt(t *testing.T) {
	srv, nc := startJetStreamServer(t)
	url := srv.ClientURL()
	rec := startRecProc(t, "record", "--nats", url, "--stream", "RUN1", "--subjects", "belief,obs.>")
	rec.waitLine(t, "recording serket.v2.default.belief, serket.v2.default.obs.> into stream RUN1")
	subj, _ := bus.NewSubjects("")
	for _, s := range []string{subj.Latent(), subj.Belief(), subj.ObsPost("audio")} {
		nc.Publish(s, []byte("x"))
	}
	nc.Flush()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	waitFor(t, ctx, func() bool {
		s, err := js.Stream(ctx, "RUN1")
		return err == nil && s.CachedInfo().State.Msgs == 2
	})
	rec.cmd.Process.Signal(os.Interrupt)
	out, err := rec.wait(t)
	if err != nil || !strings.Contains(out, "recorded 2 messages") || strings.Contains(out, "latent") {
		t.Fatalf("serket record after Ctrl-C: %v\n%s", err, out)
	}

	// At a hundredth of the speed the second message is far off: Ctrl-C
	// after the first.
	sub, err := nc.SubscribeSync("serket.v2.default.>")
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	rep := startRecProc(t, "replay", "--nats", url, "--stream", "RUN1", "--speed", "0.001")
	if _, err := sub.NextMsg(10 * time.Second); err != nil {
		t.Fatalf("no replayed message: %v", err)
	}
	rep.cmd.Process.Signal(os.Interrupt)
	out, err = rep.wait(t)
	if err != nil || !strings.Contains(out, "interrupted after replaying 1 message ") {
		t.Fatalf("serket replay after Ctrl-C: %v\n%s", err, out)
	}
	t.Logf("serket replay, interrupted:\n%s", out)
}

func TestRecordUsageErrors(t *testing.T) {
	plain, err := bus.StartServer(bus.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(plain.Shutdown)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no jetstream", []string{"record", "--nats", plain.ClientURL(), "--duration", "1s"}, "start it with `serket up --jetstream`"},
		{"replay without jetstream", []string{"replay", "--nats", plain.ClientURL()}, "no JetStream"},
		{"bad size", []string{"record", "--max-bytes", "lots"}, "--max-bytes"},
		{"bad speed", []string{"replay", "--speed", "-2"}, "--speed"},
		{"bad bound", []string{"replay", "--from", "yesterday"}, "--from"},
		{"bad pipeline", []string{"replay", "--pipeline-as", "Not OK"}, "--pipeline-as"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := serketOut(t, tt.args...)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || !strings.Contains(out, tt.want) {
				t.Fatalf("serket %v: err %v, output %q, want a failure saying %q", tt.args, err, out, tt.want)
			}
		})
	}
}
