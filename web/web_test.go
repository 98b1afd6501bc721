package web

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/png"
	"io"
	"math"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/serket-go/serket/bus"
)

const latent = 4

// testBus starts an embedded NATS server and returns a connection to it
// for the test's publishers, and one for the Hub.
func testBus(t *testing.T) (pub, hubConn *nats.Conn) {
	t.Helper()
	srv, err := bus.StartServer(bus.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	conn := func(name string) *nats.Conn {
		nc, err := bus.Connect(bus.ConnConfig{URL: srv.ClientURL(), Name: name})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	return conn("test"), conn("web")
}

// testView serves a Hub over httptest.
func testView(t *testing.T, hc *nats.Conn, cfg ServerConfig) (*Hub, *httptest.Server) {
	t.Helper()
	hub, err := NewHub(context.Background(), HubConfig{NC: hc, Latent: latent, Poll: 50 * time.Millisecond, Window: 30 * time.Millisecond,
		Expect: []Process{{"integrator", RoleIntegrator}, {"vision", RoleModule}}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(NewServer(hub, cfg))
	t.Cleanup(func() { ts.Close(); hub.Close() })
	return hub, ts
}

type sse struct{ name, data string }

// openEvents connects to the event stream and delivers its events; the
// stream closes when the test ends or cancel is called.
func openEvents(t *testing.T, url string) (<-chan sse, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/api/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %s, %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	ch := make(chan sse, 100)
	go func() {
		defer resp.Body.Close()
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		var ev sse
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			case line == "" && ev.name != "":
				ch <- ev
				ev = sse{}
			}
		}
	}()
	return ch, cancel
}

// waitEvent returns the first event named name whose data satisfies ok.
func waitEvent(t *testing.T, ch <-chan sse, name string, ok func(data string) bool) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev, open := <-ch:
			if !open {
				t.Fatalf("the event stream ended before a %s event", name)
			}
			if ev.name == name && ok(ev.data) {
				return ev.data
			}
		case <-deadline:
			t.Fatalf("no %s event as wanted within 10 s", name)
		}
	}
}

// publish sends m as a sender that does not check what it sends would:
// NaN and all.
func publish(t *testing.T, nc *nats.Conn, subject string, m bus.Message, header map[string]string) {
	t.Helper()
	b, err := bus.Marshal(m) // sets the header even when it refuses m
	if err != nil {
		b, err = msgpack.Marshal(m)
	}
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(subject)
	msg.Data = b
	for k, v := range header {
		msg.Header.Set(k, v)
	}
	if err := nc.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
}

func belief(seq uint64, mu ...float32) *bus.Belief {
	b := &bus.Belief{Seq: seq, Time: time.Now().UnixNano(), Mu: bus.Matrix(1, latent, mu), LogVar: bus.Matrix(1, latent, make([]float32, latent)),
		Sources: []bus.Source{{Module: "vision", AgeNs: 3e6}}}
	b.SetSender("integrator")
	return b
}

func tinyPNG(t *testing.T) []byte {
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, 4, 4))); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func saying(sender string, p bus.Payload) *bus.DecodeReply {
	d := &bus.DecodeReply{Outputs: []bus.Payload{p}}
	d.SetSender(sender)
	return d
}

// waitRefused waits until the Hub has refused n messages of kind.
func waitRefused(t *testing.T, h *Hub, kind string, n uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.Refused()[kind] < n {
		if time.Now().After(deadline) {
			t.Fatalf("refused %s: %d, want %d", kind, h.Refused()[kind], n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestBeliefsAndRenderings: a page gets the beliefs and what modules
// render of them; what is forged, garbage or NaN is refused and counted,
// and never reaches it; a rendering of a type a browser would run as
// markup is shown as its size only.
func TestBeliefsAndRenderings(t *testing.T) {
	pub, hc := testBus(t)
	hub, ts := testView(t, hc, ServerConfig{})
	events, _ := openEvents(t, ts.URL)
	waitEvent(t, events, "services", func(string) bool { return true })
	subj, _ := bus.NewSubjects("")

	// Refused: garbage, a NaN mean, a wrong latent size, a rendering
	// under another module's name.
	pub.Publish(subj.Belief(), []byte("garbage"))
	publish(t, pub, subj.Belief(), belief(7, float32(math.NaN()), 0, 0, 0), nil)
	wrong := belief(8, 1, 2, 3, 4)
	wrong.Mu, wrong.LogVar = bus.Matrix(1, 2, []float32{1, 2}), bus.Matrix(1, 2, []float32{0, 0})
	publish(t, pub, subj.Belief(), wrong, nil)
	publish(t, pub, subj.Said("vision"), saying("audio", bus.Payload{Type: "image/png", Data: tinyPNG(t)}), nil)
	waitRefused(t, hub, "belief", 3)
	waitRefused(t, hub, "said", 1)

	publish(t, pub, subj.Belief(), belief(9, 1, 2, 3, 4), nil)
	data := waitEvent(t, events, "belief", func(string) bool { return true })
	var b beliefView
	if err := json.Unmarshal([]byte(data), &b); err != nil || b.Seq != 9 || len(b.Sources) != 1 || b.Sources[0].Module != "vision" || b.Sources[0].AgeMs != 3 {
		t.Fatalf("belief event %s (%v), want seq 9 from vision 3 ms old: the refused ones must not show", data, err)
	}

	img := tinyPNG(t)
	publish(t, pub, subj.Said("vision"), saying("vision", bus.Payload{Type: "image/png", Data: img}), map[string]string{bus.HeaderSeq: "9"})
	data = waitEvent(t, events, "said", func(d string) bool { return strings.Contains(d, `"vision"`) })
	var s saidView
	json.Unmarshal([]byte(data), &s)
	if s.URL != "/api/said/vision?seq=9" {
		t.Fatalf("said event %s: want the image's URL", data)
	}
	resp, err := http.Get(ts.URL + s.URL)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Content-Type") != "image/png" || !bytes.Equal(got, img) {
		t.Fatalf("GET %s: %q, %d bytes; want the PNG", s.URL, resp.Header.Get("Content-Type"), len(got))
	}

	publish(t, pub, subj.Said("language"), saying("language", bus.Payload{Type: "text/html", Data: []byte("<script>alert(1)</script>")}), nil)
	data = waitEvent(t, events, "said", func(d string) bool { return strings.Contains(d, `"language"`) })
	s = saidView{}
	json.Unmarshal([]byte(data), &s)
	if s.URL != "" || s.Text == "" || s.Bytes != 25 {
		t.Fatalf("said event %s: markup must come as text, never as a URL the browser loads", data)
	}
	publish(t, pub, subj.Said("audio"), saying("audio", bus.Payload{Type: "application/x-evil", Data: []byte{1, 2, 3}}), nil)
	data = waitEvent(t, events, "said", func(d string) bool { return strings.Contains(d, `"audio"`) })
	s = saidView{}
	json.Unmarshal([]byte(data), &s)
	if s.URL != "" || s.Text != "" || s.Bytes != 3 {
		t.Fatalf("said event %s: an unknown type is shown as its size only", data)
	}
	if resp, err := http.Get(ts.URL + "/api/said/audio"); err != nil || resp.StatusCode != 404 {
		t.Fatalf("GET /api/said/audio: %v %v, want 404", resp.Status, err)
	}
}

// TestTrainingCurve: the integrator's reports become the curve; a page
// that connects late gets the history; a report that is not finite is
// refused.
func TestTrainingCurve(t *testing.T) {
	pub, hc := testBus(t)
	hub, ts := testView(t, hc, ServerConfig{})
	subj, _ := bus.NewSubjects("")
	report := func(step uint64, elbo float64, end bool) *bus.TrainProgress {
		tp := &bus.TrainProgress{ID: "ab12", Step: step, Epoch: 0, Epochs: 2, Progress: float64(step) / 100, Steps: 1, Items: 10, ELBO: elbo,
			LogLik: map[string]float64{"vision": elbo / 2}, Beta: 1, SamplesPerSec: 100, EpochEnd: end}
		if end {
			tp.Steps, tp.Tested, tp.TestELBO = 0, true, elbo+1
		}
		tp.SetSender("integrator")
		return tp
	}
	for i := uint64(1); i <= 5; i++ {
		publish(t, pub, subj.TrainProgress(), report(i, -100+float64(i), false), nil)
	}
	bad := report(6, 0, false)
	bad.ELBO = math.Inf(-1)
	publish(t, pub, subj.TrainProgress(), bad, nil)
	publish(t, pub, subj.TrainProgress(), report(7, -90, true), nil)
	waitRefused(t, hub, "progress", 1)

	events, _ := openEvents(t, ts.URL)
	var tv trainView
	waitEvent(t, events, "train", func(d string) bool {
		json.Unmarshal([]byte(d), &tv)
		return len(tv.Epochs) == 1
	})
	// The first event may hold part of the history and the next the rest.
	n := len(tv.Points)
	if n < 5 {
		data := waitEvent(t, events, "train", func(string) bool { return true })
		var more trainView
		json.Unmarshal([]byte(data), &more)
		n += len(more.Points)
	}
	if n != 5 || tv.Run != "ab12" || tv.Epochs[0].TestELBO == nil || *tv.Epochs[0].TestELBO != -89 {
		t.Fatalf("train history: %d points, run %q, epochs %+v; want 5 points and the epoch's test ELBO -89", n, tv.Run, tv.Epochs)
	}
	late := report(8, -80, false)
	late.Missed = map[string]int32{"vision": 1}
	publish(t, pub, subj.TrainProgress(), late, nil)
	data := waitEvent(t, events, "train", func(d string) bool { return strings.Contains(d, `"step":8`) })
	json.Unmarshal([]byte(data), &tv)
	if tv.Reset || len(tv.Points) != 1 || tv.Points[0].ELBO != -80 || tv.Points[0].LogLik["vision"] != -40 || tv.Status == nil || len(tv.Status.Missing) != 1 {
		t.Fatalf("train increment %s: want just step 8, with vision missing", data)
	}
	waitEvent(t, events, "services", func(d string) bool { // the step vision missed, on its node
		var v servicesView
		json.Unmarshal([]byte(d), &v)
		return slices.ContainsFunc(v.Nodes, func(n nodeView) bool { return n.Name == "vision" && n.Missed == 1 })
	})
}

// TestPageLeavesNothingRunning: the watcher (discovery polls, posterior
// subscriptions) runs while a page is open and stops when it goes.
func TestPageLeavesNothingRunning(t *testing.T) {
	_, hc := testBus(t)
	hub, ts := testView(t, hc, ServerConfig{})
	base := hc.NumSubscriptions()
	events, cancel := openEvents(t, ts.URL)
	waitEvent(t, events, "services", func(string) bool { return true })
	waitFor(t, "the watcher's subscriptions", func() bool { return hc.NumSubscriptions() > base })
	cancel()
	waitFor(t, "the page to leave", func() bool { return hub.Pages() == 0 })
	waitFor(t, "every subscription of the watcher to end", func() bool { return hc.NumSubscriptions() == base })
	hub.mu.Lock()
	w := hub.watch
	hub.mu.Unlock()
	if w != nil {
		t.Fatal("the watcher still runs with no page open")
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestToken: with a token, nothing is served without it; the page's
// URL with ?token= sets a cookie and drops it from the address; a POST
// from another site's page and a foreign Host are refused.
func TestToken(t *testing.T) {
	_, hc := testBus(t)
	_, ts := testView(t, hc, ServerConfig{Token: "s3cret"})
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, path := range []string{"/", "/app.js", "/api/events", "/?token=wrong"} {
		resp, err := noRedirect.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without the token: %s, want 401", path, resp.Status)
		}
	}
	resp, err := noRedirect.Get(ts.URL + "/?token=s3cret")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" || len(cookies) != 1 || !cookies[0].HttpOnly {
		t.Fatalf("GET /?token=: %s to %q with %v; want a redirect to / setting an HttpOnly cookie", resp.Status, resp.Header.Get("Location"), cookies)
	}
	req, _ := http.NewRequest("GET", ts.URL+"/", nil)
	req.AddCookie(cookies[0])
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(page, []byte("app.js")) || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Fatalf("GET / with the cookie: %s, CSP %q", resp.Status, resp.Header.Get("Content-Security-Policy"))
	}
	req, _ = http.NewRequest("POST", ts.URL+"/api/ask", strings.NewReader(""))
	req.AddCookie(cookies[0])
	req.Header.Set("Origin", "http://evil.example")
	if resp, err = http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a POST from another origin: %v %v, want 403", resp.Status, err)
	}

	_, local := testView(t, hc, ServerConfig{Hosts: []string{"localhost:1"}})
	if resp, err := http.Get(local.URL + "/"); err != nil || resp.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("a Host the view does not answer to: %v %v, want 421", resp.Status, err)
	}
}

// ask posts a form to the view and decodes its JSON answer.
func ask(t *testing.T, url string, fields map[string]string, files map[string][]byte) (int, map[string]any) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	for k, v := range files {
		w, _ := mw.CreateFormFile(k, strings.TrimPrefix(k, "file.")+".png")
		w.Write(v)
	}
	mw.Close()
	resp, err := http.Post(url+"/api/ask", mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("ask: %s: %v", resp.Status, err)
	}
	return resp.StatusCode, out
}

// TestAsk: the form becomes the request serket infer sends (an integrator
// stands in here, to see it and to answer), outputs come back by type,
// and bad forms get the CLI's errors.
func TestAsk(t *testing.T) {
	pub, hc := testBus(t)
	_, ts := testView(t, hc, ServerConfig{})

	code, out := ask(t, ts.URL, map[string]string{"text.language": "a sneaker", "want": "vision"}, nil)
	if code != http.StatusBadGateway || !strings.Contains(out["error"].(string), "no integrator answers") {
		t.Fatalf("no integrator: %d %v", code, out)
	}

	subj, _ := bus.NewSubjects("")
	got := make(chan *bus.InferRequest, 1)
	sub, err := pub.Subscribe(subj.Infer(), func(m *nats.Msg) {
		var req bus.InferRequest
		if bus.UnmarshalFrom(m.Subject, m.Data, &req, bus.Expect{}) != nil {
			return
		}
		got <- &req
		rep := &bus.InferReply{Mu: bus.Matrix(1, latent, make([]float32, latent)), LogVar: bus.Matrix(1, latent, make([]float32, latent)),
			Z: bus.Matrix(1, latent, make([]float32, latent)), Contributors: []string{"language"}, Missing: map[string]string{"audio": "no module named audio answers"},
			Outputs: map[string][]bus.Payload{"vision": {{Type: "image/png", Data: tinyPNG(t)}}, "language": {{Type: "text/html", Data: []byte("<b>x</b>")}}}}
		rep.SetSender("integrator")
		b, err := bus.Marshal(rep)
		if err != nil {
			panic(err)
		}
		m.Respond(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	code, out = ask(t, ts.URL, map[string]string{"text.language": "a sneaker", "want": "vision", "samples": "2"}, map[string][]byte{"file.vision": tinyPNG(t)})
	req := <-got
	if string(req.Observations["language"].Data) != "a sneaker" || req.Observations["vision"].Type != "image/png" || len(req.Want) != 1 || req.Want[0] != "vision" || req.Samples != 2 {
		t.Fatalf("the request: %+v", req)
	}
	outs, ok := out["outputs"].(map[string]any)
	if !ok {
		t.Fatalf("ask: %d %v", code, out)
	}
	vision := outs["vision"].([]any)[0].(map[string]any)
	language := outs["language"].([]any)[0].(map[string]any)
	if code != 200 || !strings.HasPrefix(vision["data_url"].(string), "data:image/png;base64,") || language["data_url"] != nil || language["bytes"].(float64) != 8 {
		t.Fatalf("ask: %d %v; want the image as a data URL and the markup as its size only", code, out)
	}
	if !strings.Contains(out["unanswered"].(string), "vision was not used") {
		t.Fatalf("ask: unanswered %q, want the CLI's words for the unused input", out["unanswered"])
	}

	for _, c := range []struct {
		name   string
		fields map[string]string
		files  map[string][]byte
		code   int
		want   string
	}{
		{"nothing", map[string]string{}, nil, 400, "give at least one input"},
		{"bad module", map[string]string{"text.no such": "x"}, nil, 400, "is not a module name"},
		{"bad want", map[string]string{"want": "../x"}, nil, 400, "is not a module name"},
		{"samples", map[string]string{"want": "vision", "samples": "99"}, nil, 400, "from 0 (the fused mean) to 8"},
		{"field", map[string]string{"evil": "1"}, nil, 400, "unknown form field"},
		{"too large", map[string]string{"want": "vision"}, map[string][]byte{"file.vision": make([]byte, bus.MaxObservationBytes+1)}, 413, "the limit is 32 MiB"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out := ask(t, ts.URL, c.fields, c.files)
			if code != c.code || !strings.Contains(out["error"].(string), c.want) {
				t.Fatalf("%d %v, want %d and %q", code, out, c.code, c.want)
			}
		})
	}
}

// TestProjection: points on a line in the latent project onto PC1 with
// all the variance, each keeping its group.
func TestProjection(t *testing.T) {
	b := newLatentBook(3)
	for i := 0; i < 20; i++ {
		x := float32(i)
		g := "vision"
		if i%2 == 1 {
			g = "concept 1"
		}
		b.add(g, []float32{x, 2 * x, -x})
	}
	b.add("vision", []float32{1, 2}) // another size: dropped
	v, ok := projectPoints(b.points())
	if !ok || v.N != 20 || v.Explained[0] < 0.999 || v.By != "concept" {
		t.Fatalf("projection: ok %v, n %d, explained %v, by %q", ok, v.N, v.Explained, v.By)
	}
	for _, p := range v.Points {
		if math.Abs(p.Y) > 1e-6 {
			t.Fatalf("a point off PC1: %+v", p)
		}
	}
	if _, ok := projectPoints(groupedRows{}); ok {
		t.Fatal("no points projected to something")
	}
}

func TestListen(t *testing.T) {
	ln, url, hosts, err := Listen(":0", true)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(interface{ String() string }).String()
	if !strings.HasPrefix(port, "127.0.0.1:") || !strings.HasPrefix(url, "http://127.0.0.1:") || len(hosts) != 3 {
		t.Fatalf("Listen(:0, local): %s, %s, %v; want 127.0.0.1 and its Host names", port, url, hosts)
	}
	if _, _, _, err := Listen("8080", false); err == nil || !strings.Contains(err.Error(), "host:port") {
		t.Fatalf("Listen(8080): %v", err)
	}
}
