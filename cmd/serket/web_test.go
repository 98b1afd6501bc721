package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/examples/custom-modality/touchsim"
)

// browser starts headless Chromium for the test, or skips it saying why:
// a machine without Chromium cannot run it, and the test must not pass
// as if it had.
func browser(t *testing.T) context.Context {
	t.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Skip("SKIPPED: no Chromium on this machine (apt-get install chromium): the live view's browser test cannot run")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1400, 1100))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	if err := chromedp.Do(ctx); err != nil {
		t.Skipf("SKIPPED: Chromium at %s does not start here: %v", path, err)
	}
	return ctx
}

// screenshotDir is where the browser tests leave their screenshots:
// $SERKET_SCREENSHOTS, else out/test-web in the repository.
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("SERKET_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "out", "test-web")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(dir)
	return abs
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(screenshotDir(t), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

var (
	viewURL = regexp.MustCompile(`live view: (http://\S+)`)
	natsURL = regexp.MustCompile(`embedded NATS server listening.* url=(nats://\S+)`)
)

// outputMatch waits for re in out and returns its first group.
func outputMatch(t *testing.T, out *syncBuffer, re *regexp.Regexp) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var m []string
	waitFor(t, ctx, func() bool { m = re.FindStringSubmatch(out.String()); return m != nil })
	return m[1]
}

// wait runs a chromedp wait with a deadline of its own, failing the test
// with what it waited for.
func wait(t *testing.T, ctx context.Context, what string, d time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if err := chromedp.Do(wctx, actions...); err != nil {
		screenshot(t, ctx, "failed")
		t.Fatalf("the page: %s: %v", what, err)
	}
}

// pointsOf reads an element's data-points.
func pointsOf(t *testing.T, ctx context.Context, sel string) int {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(sel), "data-points"))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(v.Value)
	return n
}

// TestWebViewTrainingCurve: during a short `serket train --web`, a real
// browser's training curve gains points, and the page paints within a
// second.
func TestWebViewTrainingCurve(t *testing.T) {
	ctx := browser(t)
	data := datasettest.Dir(t)
	ckpt := filepath.Join(t.TempDir(), "run")
	_, out := startProcess(t, syscall.SIGINT, "train", "--data", data, "--epochs", "200", "--batch", "20", "--plan", "cross", "--lambda", "language=10",
		"--checkpoint-dir", ckpt, "--eval-items", "0", "--web", "127.0.0.1:0")
	url := outputMatch(t, out, viewURL)

	start := time.Now()
	wait(t, ctx, "the page is ready", 20*time.Second, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(`body[data-ready="1"]`)))
	fcp, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`(performance.getEntriesByName('first-contentful-paint')[0]||{startTime:-1}).startTime`))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first contentful paint %.0f ms after navigation; ready (first services event shown) %v after", fcp, time.Since(start).Round(time.Millisecond))
	if fcp < 0 || fcp > 1000 {
		t.Errorf("first contentful paint %.0f ms, want under 1 s", fcp)
	}
	wait(t, ctx, "the curve has points", 60*time.Second, chromedp.WaitVisible(chromedp.CSS(`#train[data-points]:not([data-points="0"])`)))
	first := pointsOf(t, ctx, "#train")
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	waitFor(t, wctx, func() bool { return pointsOf(t, ctx, "#train") > first })
	t.Logf("the curve went from %d to %d points", first, pointsOf(t, ctx, "#train"))
	screenshot(t, ctx, "training")
}

// TestWebViewPipeline: `serket up --web` on a streaming pipeline of the
// three modules and the touch module of examples/custom-modality, which
// the view has never heard of, looked at in a real browser: the graph
// shows every module healthy; asking for vision and touch from "a
// sneaker" shows an image and touch's reading; a caption on the
// keyboard's subject becomes a belief whose image vision renders and
// touch says; a SIGKILLed module turns red, and green again once
// restarted.
func TestWebViewPipeline(t *testing.T) {
	ctx := browser(t)
	data := datasettest.Dir(t)
	if _, err := touchsim.Prepare(data, 1); err != nil {
		t.Fatal(err)
	}
	touch := filepath.Join(t.TempDir(), "touch")
	if out, err := exec.Command("go", "build", "-o", touch, "../../examples/custom-modality").CombinedOutput(); err != nil {
		t.Fatalf("building touch: %v\n%s", err, out)
	}
	file := writeFile(t, "stream.yaml", `
fusion: {slop: 2s}
modules:
  - {name: vision, sensors: [robot.camera], sensor_type: image/png, say_beliefs: true}
  - {name: audio, sensors: [robot.mic], sensor_type: audio/wav, say_beliefs: true}
  - {name: language, sensors: [robot.keyboard], sensor_type: text/plain, say_beliefs: true}
  - {name: touch, command: [`+touch+`], say_beliefs: true}
`)
	_, out := startUp(t, file, "--port", "0", "--data", data, "--checkpoint-dir", filepath.Join(t.TempDir(), "fresh"), "--web", "127.0.0.1:0")
	url := outputMatch(t, out, viewURL)
	nurl := outputMatch(t, out, natsURL)

	wait(t, ctx, "the graph shows the integrator and the three modules healthy", 60*time.Second, chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.CSS(`[data-node="integrator"][data-health="ok"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-node="vision"][data-health="ok"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-node="language"][data-health="ok"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-node="audio"][data-health="ok"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-node="touch"][data-health="ok"]`)))
	screenshot(t, ctx, "pipeline")

	wait(t, ctx, `asking for vision from "a sneaker" shows an image`, 30*time.Second,
		chromedp.WaitVisible(chromedp.CSS(`input[name="text.language"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="text.language"]`), "a sneaker"),
		chromedp.Click(chromedp.CSS(`input[name="want"][value="vision"]`)),
		chromedp.Click(chromedp.CSS(`input[name="want"][value="touch"]`)),
		chromedp.Click(chromedp.CSS(`#ask-submit`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-output="vision"] img`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-output="touch"] .output-text`)))
	width, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelector('[data-output="vision"] img').naturalWidth`))
	if err != nil || width != 28 {
		t.Fatalf("the generated image is %d pixels wide (%v), want Fashion-MNIST's 28", width, err)
	}
	screenshot(t, ctx, "ask")

	// A file that is no image gets the CLI's error, on the page.
	garbage := filepath.Join(t.TempDir(), "photo.png")
	if err := os.WriteFile(garbage, []byte("not a PNG at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	wait(t, ctx, "an upload that does not parse shows the CLI's error", 30*time.Second,
		chromedp.Clear(chromedp.CSS(`input[name="text.language"]`)),
		chromedp.SetUploadFiles(chromedp.CSS(`input[name="file.vision"]`), []string{garbage}),
		chromedp.Click(chromedp.CSS(`input[name="want"][value="touch"]`)), // off again
		chromedp.Click(chromedp.CSS(`#ask-submit`)),
		chromedp.WaitVisible(chromedp.CSS(`#ask-error`)))
	msg, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(`#ask-error`)))
	if err != nil || !strings.Contains(msg, "vision was not used") {
		t.Fatalf("the page's error for a file that is no image: %q (%v); want the CLI's \"vision was not used (…)\"", msg, err)
	}
	t.Logf("the page says: %s", msg)

	nc, err := bus.Connect(bus.ConnConfig{URL: nurl, Name: "test-keyboard"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	typeCaption := func() {
		m := nats.NewMsg("robot.keyboard")
		m.Data = []byte("a photo of a sneaker")
		m.Header.Set(bus.HeaderTime, strconv.FormatInt(time.Now().UnixNano(), 10))
		nc.PublishMsg(m)
	}
	typeCaption()
	stop := make(chan struct{})
	go func() { // the keyboard goes on typing, as a robot's would
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				typeCaption()
			}
		}
	}()
	wait(t, ctx, "a belief from the keyboard, vision's image of it and what touch says of it", 30*time.Second,
		chromedp.WaitVisible(chromedp.CSS(`[data-said="vision"] img`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-said="language"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-said="touch"]`)))
	screenshot(t, ctx, "beliefs")
	close(stop)

	pid := nodePID(t, ctx, "audio")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill audio (pid %d): %v", pid, err)
	}
	wait(t, ctx, "the killed module turns red", 10*time.Second, chromedp.WaitVisible(chromedp.CSS(`[data-node="audio"][data-health="down"]`)))
	screenshot(t, ctx, "killed")
	wait(t, ctx, "the restarted module turns green", 60*time.Second, chromedp.WaitVisible(chromedp.CSS(`[data-node="audio"][data-health="ok"]`)))
	if again := nodePID(t, ctx, "audio"); again == pid {
		t.Fatalf("audio is green with the killed process's pid %d", pid)
	}
	screenshot(t, ctx, "restarted")
}

// nodePID is the process id the page shows for a node.
func nodePID(t *testing.T, ctx context.Context, name string) int {
	t.Helper()
	js := fmt.Sprintf(`(() => { const r = [...document.querySelectorAll('#nodes tr')].find(r => r.dataset.node === %q); return r ? +r.querySelector('td.col-pid').textContent : 0; })()`, name)
	pid, err := chromedp.Run(ctx, chromedp.Evaluate[int](js))
	if err != nil || pid == 0 {
		t.Fatalf("the page shows no pid for %s (%v)", name, err)
	}
	return pid
}

// TestWebViewSecureAndAttached: `serket up --secure --web :0` binds the
// view to localhost and serves nothing without the token it prints; with
// it, the view (signed in with the admin key) sees every process. `serket
// view` attaches to the same pipeline with the admin key and sees them
// too, behind a token of its own.
func TestWebViewSecureAndAttached(t *testing.T) {
	keys := t.TempDir()
	_, out := startUp(t, writeFile(t, "pipeline.yaml", threeToys), "--port", "0", "--secure", "--key-dir", keys, "--web", ":0")
	url := outputMatch(t, out, viewURL)
	if !strings.HasPrefix(url, "http://127.0.0.1:") || !strings.Contains(url, "?token=") {
		t.Fatalf("the secured view's URL %s: want 127.0.0.1 and a token", url)
	}
	base, _, _ := strings.Cut(url, "?")
	if resp, err := http.Get(base + "api/events"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the events without the token: %v %v, want 401", resp.Status, err)
	}
	seesEveryProcess(t, url)

	nurl := outputMatch(t, out, natsURL)
	_, vout := startProcess(t, syscall.SIGTERM, "view", "--nats", nurl, "--pipeline", "itest", "--nkey", filepath.Join(keys, "admin.nk"), "--web", ":0")
	seesEveryProcess(t, outputMatch(t, vout, viewURL))
}

// seesEveryProcess opens the view's event stream with the token in url
// and waits for a services event where the three toys and the integrator
// are ok.
func seesEveryProcess(t *testing.T, url string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar}
	resp, err := hc.Get(url) // sets the cookie
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %v %v", url, resp.Status, err)
	}
	resp.Body.Close()
	base, _, _ := strings.Cut(url, "?")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"api/events", nil)
	if resp, err = hc.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("the events with the cookie: %v %v", resp.Status, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		var v struct {
			Nodes []struct{ Name, Health string }
		}
		if !ok || json.Unmarshal([]byte(line), &v) != nil {
			continue
		}
		healthy := 0
		for _, n := range v.Nodes {
			if n.Health == "ok" && slices.Contains([]string{"integrator", "left", "right", "top"}, n.Name) {
				healthy++
			}
		}
		if healthy == 4 {
			return
		}
	}
	t.Fatalf("no services event with the integrator, left, right and top ok (%v)", sc.Err())
}
