package bus_test

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/serket-go/serket/bus"
)

// quiet is a logger for Connect that drops everything.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// startServer starts an embedded server and shuts it down when the test ends.
func startServer(t *testing.T, cfg bus.ServerConfig) *bus.Server {
	t.Helper()
	s, err := bus.StartServer(cfg)
	if err != nil {
		t.Fatalf("StartServer(%+v): %v", cfg, err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// connect connects and closes the connection when the test ends (before the
// servers it started earlier are shut down).
func connect(t *testing.T, cfg bus.ConnConfig) *nats.Conn {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	nc, err := bus.Connect(cfg)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func portOf(t *testing.T, s *bus.Server) int {
	t.Helper()
	addr, ok := s.Addr().(*net.TCPAddr)
	if !ok {
		t.Fatalf("server address %v is not TCP", s.Addr())
	}
	return addr.Port
}

// freePort returns a port nothing listens on (at the moment).
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.After(within)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("%s: not within %v", what, within)
		case <-tick.C:
		}
	}
}

// exchange publishes on subject from pub, again and again, until sub's
// channel receives the message or the deadline passes. Repeating makes it
// safe against a subscription that reaches the server a moment late.
func exchange(t *testing.T, pub *nats.Conn, ch <-chan *nats.Msg, subject string, within time.Duration) {
	t.Helper()
	payload := []byte("hello " + subject)
	deadline := time.After(within)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := pub.Publish(subject, payload); err != nil && !errors.Is(err, nats.ErrReconnectBufExceeded) {
			t.Fatalf("Publish: %v", err)
		}
		select {
		case m := <-ch:
			if m.Subject != subject || string(m.Data) != string(payload) {
				t.Fatalf("received %q on %s, want %q on %s", m.Data, m.Subject, payload, subject)
			}
			return
		case <-deadline:
			t.Fatalf("no message on %s within %v", subject, within)
		case <-tick.C:
		}
	}
}

func subscribe(t *testing.T, nc *nats.Conn, subject string) <-chan *nats.Msg {
	t.Helper()
	ch := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(subject, ch)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return ch
}

func TestStartServerRandomPort(t *testing.T) {
	a := startServer(t, bus.ServerConfig{})
	b := startServer(t, bus.ServerConfig{})
	pa, pb := portOf(t, a), portOf(t, b)
	if pa == 0 || pa == bus.DefaultPort || pa == pb {
		t.Errorf("ports %d and %d: want two random ports", pa, pb)
	}
	if want := "127.0.0.1:" + strconv.Itoa(pa); !strings.Contains(a.ClientURL(), want) {
		t.Errorf("ClientURL() = %q, want it on %s", a.ClientURL(), want)
	}
	if a.JetStreamEnabled() {
		t.Errorf("JetStream on without being asked for")
	}
}

func TestStartServerPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	port := l.Addr().(*net.TCPAddr).Port
	s, err := bus.StartServer(bus.ServerConfig{Port: port, Ready: 300 * time.Millisecond})
	if err == nil {
		s.Shutdown()
		t.Fatalf("StartServer on a port in use succeeded")
	}
	if !strings.Contains(err.Error(), strconv.Itoa(port)) {
		t.Errorf("error %q does not name the port", err)
	}
}

// TestConnect connects every way there is and checks that a message gets
// across between the connections.
func TestConnect(t *testing.T) {
	s := startServer(t, bus.ServerConfig{})
	// The subscriber is on its own connection by URL.
	sub := connect(t, bus.ConnConfig{URL: s.ClientURL(), Name: "serket-sub"})
	tests := []struct {
		name   string
		cfg    bus.ConnConfig
		setEnv bool
	}{
		{name: "by URL", cfg: bus.ConnConfig{URL: s.ClientURL(), Name: "serket-url"}},
		{name: "in process", cfg: bus.ConnConfig{Server: s, Name: "serket-inproc"}},
		{name: "by NATS_URL", cfg: bus.ConnConfig{Name: "serket-env"}, setEnv: true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setEnv {
				t.Setenv("NATS_URL", s.ClientURL())
			}
			nc := connect(t, tt.cfg)
			if !nc.IsConnected() {
				t.Fatalf("Connect returned a connection that is not connected")
			}
			subject := "serket.v2.test.connect." + strconv.Itoa(i)
			exchange(t, nc, subscribe(t, sub, subject), subject, 5*time.Second)
			// And the other way round.
			back := subject + ".back"
			exchange(t, sub, subscribe(t, nc, back), back, 5*time.Second)
		})
	}
}

func TestConnectConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		cfg     bus.ConnConfig
		wantErr string
	}{
		{name: "cert without key", cfg: bus.ConnConfig{URL: "nats://127.0.0.1:1", CertFile: "c.pem"}, wantErr: "both a cert file and a key file"},
		{name: "key without cert", cfg: bus.ConnConfig{URL: "nats://127.0.0.1:1", KeyFile: "k.pem"}, wantErr: "both a cert file and a key file"},
		{name: "missing creds file", cfg: bus.ConnConfig{URL: "nats://127.0.0.1:1", Creds: filepath.Join(t.TempDir(), "none.creds"), Wait: 300 * time.Millisecond}, wantErr: "127.0.0.1:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Logger = quiet
			nc, err := bus.Connect(tt.cfg)
			if err == nil {
				nc.Close()
				t.Fatalf("Connect succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestConnectNoServer(t *testing.T) {
	url := "nats://127.0.0.1:" + strconv.Itoa(freePort(t))
	start := time.Now()
	nc, err := bus.Connect(bus.ConnConfig{URL: url, Name: "serket-lonely", Wait: 300 * time.Millisecond, Logger: quiet})
	took := time.Since(start)
	if err == nil {
		nc.Close()
		t.Fatalf("Connect to %s with nothing there succeeded", url)
	}
	if nc != nil {
		t.Errorf("Connect returned a connection along with the error")
	}
	if !strings.Contains(err.Error(), url) {
		t.Errorf("error %q does not name %s", err, url)
	}
	if took < 300*time.Millisecond || took > 1500*time.Millisecond {
		t.Errorf("Connect gave up after %v, want about 300ms", took)
	}
}

// TestConnectRetriesFirstConnection starts Connect before there is a
// server: a plain listener takes the first attempt and hangs up, then the
// server starts on that port and Connect must succeed.
func TestConnectRetriesFirstConnection(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	url := "nats://127.0.0.1:" + strconv.Itoa(port)

	type result struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, err := bus.Connect(bus.ConnConfig{URL: url, Name: "serket-early", Wait: 15 * time.Second, Logger: quiet})
		done <- result{nc, err}
	}()

	// Wait for the client's first attempt, then refuse it.
	if err := l.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	c, err := l.Accept()
	if err != nil {
		t.Fatalf("the client never tried: %v", err)
	}
	c.Close()
	l.Close()

	s := startServer(t, bus.ServerConfig{Port: port})
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("Connect: %v", r.err)
		}
		t.Cleanup(r.nc.Close)
		if got := r.nc.ConnectedUrl(); got != url {
			t.Errorf("connected to %q, want %q", got, url)
		}
		other := connect(t, bus.ConnConfig{Server: s})
		exchange(t, other, subscribe(t, r.nc, "serket.v2.test.early"), "serket.v2.test.early", 5*time.Second)
	case <-time.After(15 * time.Second):
		t.Fatal("Connect did not return after the server started")
	}
}

// TestReconnect: a subscription survives the server going away and coming
// back on the same port.
func TestReconnect(t *testing.T) {
	s1, err := bus.StartServer(bus.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	port := portOf(t, s1)
	nc := connect(t, bus.ConnConfig{URL: s1.ClientURL(), Name: "serket-survivor"})
	const subject = "serket.v2.test.reconnect"
	ch := subscribe(t, nc, subject)
	exchange(t, nc, ch, subject, 5*time.Second)

	s1.Shutdown()
	waitFor(t, "disconnect", 5*time.Second, func() bool { return !nc.IsConnected() })

	s2 := startServer(t, bus.ServerConfig{Port: port})
	waitFor(t, "reconnect", 10*time.Second, nc.IsConnected)
	if got := nc.Stats().Reconnects; got < 1 {
		t.Errorf("%d reconnects, want at least 1", got)
	}
	// Published from another connection, so the message must come through
	// the new server to the old subscription.
	other := connect(t, bus.ConnConfig{Server: s2})
	exchange(t, other, ch, subject, 5*time.Second)
}

func TestServerJetStream(t *testing.T) {
	tests := []struct {
		name        string
		jetStream   bool
		storeDir    bool // give a store directory
		wantEnabled bool
		wantTemp    bool // a temp store is made, and removed on Shutdown
	}{
		{name: "off", jetStream: false},
		{name: "temp store", jetStream: true, wantEnabled: true, wantTemp: true},
		{name: "given store", jetStream: true, storeDir: true, wantEnabled: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmp := t.TempDir()
			t.Setenv("TMPDIR", tmp) // where os.MkdirTemp makes the temp store
			cfg := bus.ServerConfig{JetStream: tt.jetStream}
			if tt.storeDir {
				cfg.StoreDir = filepath.Join(t.TempDir(), "js")
			}
			s, err := bus.StartServer(cfg)
			if err != nil {
				t.Fatal(err)
			}
			shut := false
			t.Cleanup(func() {
				if !shut {
					s.Shutdown()
				}
			})
			if got := s.JetStreamEnabled(); got != tt.wantEnabled {
				t.Fatalf("JetStreamEnabled() = %v, want %v", got, tt.wantEnabled)
			}
			temps, err := filepath.Glob(filepath.Join(tmp, "serket-jetstream-*"))
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantTemp != (len(temps) == 1) || len(temps) > 1 {
				t.Fatalf("temp stores %v, want one: %v", temps, tt.wantTemp)
			}
			if tt.wantEnabled {
				want := cfg.StoreDir
				if tt.wantTemp {
					want = temps[0]
				}
				if !strings.HasPrefix(s.StoreDir(), want) {
					t.Errorf("StoreDir() = %q, want it under %q", s.StoreDir(), want)
				}
				// JetStream answers.
				nc := connect(t, bus.ConnConfig{Server: s})
				js, err := nc.JetStream()
				if err != nil {
					t.Fatal(err)
				}
				if _, err := js.AddStream(&nats.StreamConfig{Name: "BELIEF", Subjects: []string{"serket.v2.default.belief"}}); err != nil {
					t.Fatalf("AddStream: %v", err)
				}
				if _, err := js.Publish("serket.v2.default.belief", []byte("b")); err != nil {
					t.Fatalf("JetStream publish: %v", err)
				}
				nc.Close()
			}

			s.Shutdown()
			shut = true
			for _, d := range temps {
				if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("temp store %s still there after Shutdown (%v)", d, err)
				}
			}
			if tt.storeDir {
				if _, err := os.Stat(cfg.StoreDir); err != nil {
					t.Errorf("the given store %s was removed: %v", cfg.StoreDir, err)
				}
			}
		})
	}
}

// TestServerCarriesTheLargestMessage: the embedded server takes a message
// of DefaultMaxBytes, serket's largest (an inference request with a photo
// or a WAV), from one client to another; one byte more is refused by the
// server's max_payload, which clients learn from it.
func TestServerCarriesTheLargestMessage(t *testing.T) {
	s := startServer(t, bus.ServerConfig{})
	pub := connect(t, bus.ConnConfig{URL: s.ClientURL(), Name: "pub"})
	sub := connect(t, bus.ConnConfig{URL: s.ClientURL(), Name: "sub"})
	// docs/usage.md promises inputs of 32 MiB, and a message carries one
	// with its envelope.
	if bus.DefaultMaxBytes <= 32<<20 {
		t.Fatalf("bus.DefaultMaxBytes = %d: a message cannot carry an input of 32 MiB", bus.DefaultMaxBytes)
	}
	if got := pub.MaxPayload(); got != bus.DefaultMaxBytes {
		t.Fatalf("the server's max payload is %d, want bus.DefaultMaxBytes = %d", got, bus.DefaultMaxBytes)
	}
	if _, err := sub.Subscribe("big", func(m *nats.Msg) { m.Respond([]byte{byte(len(m.Data) % 251)}) }); err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	rep, err := pub.Request("big", make([]byte, bus.DefaultMaxBytes), 10*time.Second)
	if err != nil {
		t.Fatalf("a request of DefaultMaxBytes: %v", err)
	}
	if want := byte(bus.DefaultMaxBytes % 251); len(rep.Data) != 1 || rep.Data[0] != want {
		t.Fatalf("the responder saw %v, want [%d]", rep.Data, want)
	}
	if err := pub.Publish("big", make([]byte, bus.DefaultMaxBytes+1)); !errors.Is(err, nats.ErrMaxPayload) {
		t.Fatalf("publishing DefaultMaxBytes+1: %v, want nats.ErrMaxPayload", err)
	}
}
