package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/launch"
)

// TestUpSecure: `serket up --secure` trains and serves as usual with every
// process signed in under its own key and permissions; a client without a
// key is refused, the client key runs inferences, and a module's key cannot
// publish as another module or as the integrator.
func TestUpSecure(t *testing.T) {
	data := datasettest.Dir(t)
	ckpt := filepath.Join(t.TempDir(), "run")
	keys := filepath.Join(t.TempDir(), "keys")
	trainFile := writeFile(t, "train.yaml", `
pipeline: locked
latent: 8
integrator:
  args: [--train]
  restart: {policy: on-failure}
modules:
  - {name: vision, args: [--hidden, "32"]}
  - {name: language, args: [--hidden, "32"]}
train:
  epochs: 1
  batch: 60
  checkpoint_dir: `+ckpt+`
`)
	t.Setenv("SERKET_DATA", data)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// Training runs through every training subject under the permissions.
	_, trainOut := startUp(t, "--secure", "--key-dir", keys, "--port", strconv.Itoa(freePort(t)), trainFile)
	waitFor(t, ctx, func() bool { return strings.Contains(trainOut.String(), "training done") })
	for _, name := range []string{"integrator", "vision", "language", "client", "sensor", "admin"} {
		fi, err := os.Stat(filepath.Join(keys, name+".nk"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("key of %s: %v, %v", name, fi, err)
		}
	}

	// Serving, with the same keys (kept in --key-dir and reused).
	port := freePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	serveFile := writeFile(t, "serve.yaml", `
pipeline: locked
latent: 8
modules:
  - {name: vision, args: [--hidden, "32"]}
  - {name: language, args: [--hidden, "32"]}
`)
	_, out := startUp(t, "--secure", "--key-dir", keys, "--port", strconv.Itoa(port), serveFile)
	waitFor(t, ctx, func() bool {
		msg, err := serketOut(t, "ls", "--nats", url, "--pipeline", "locked", "--nkey", filepath.Join(keys, "admin.nk"))
		return err == nil && strings.Contains(msg, "vision") && strings.Contains(msg, "language") && strings.Contains(msg, "integrator")
	})
	defer func() {
		for _, o := range []string{trainOut.String(), out.String()} {
			if strings.Contains(o, "Permissions Violation") {
				t.Errorf("a process of the pipeline was refused a subject it needs:\n%s", o)
			}
		}
	}()

	// No key: refused, and said so.
	msg, err := serketOut(t, "infer", "--nats", url, "--pipeline", "locked", "--timeout", "2s", "--from", "language=a sneaker")
	if err == nil || !strings.Contains(msg, "refused our credentials") {
		t.Errorf("serket infer without a key: %v\n%s", err, msg)
	}
	// The client key: inference works (modules answer encode and decode
	// requests under their permissions).
	clientKey := filepath.Join(keys, "client.nk")
	msg, err = serketOut(t, "infer", "--nats", url, "--pipeline", "locked", "--nkey", clientKey, "--from", "language=a sneaker", "--to", "language")
	if err != nil || !strings.Contains(msg, "contributors: language") || !strings.Contains(msg, "language[0]:") {
		t.Errorf("serket infer with the client key: %v\n%s", err, msg)
	}

	// vision's key cannot speak for language or the integrator: an admin
	// listening to the whole pipeline sees only what vision may send.
	admin, err := bus.Connect(bus.ConnConfig{URL: url, Name: "test-admin", NKeyFile: filepath.Join(keys, "admin.nk")})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	subj, _ := bus.NewSubjects("locked")
	seen := make(chan *nats.Msg, 64)
	if _, err := admin.ChanSubscribe(subj.Prefix()+".>", seen); err != nil {
		t.Fatal(err)
	}
	admin.Flush()
	vision, err := bus.Connect(bus.ConnConfig{URL: url, Name: "impostor", NKeyFile: filepath.Join(keys, "vision.nk")})
	if err != nil {
		t.Fatal(err)
	}
	defer vision.Close()
	forged := []string{subj.Post("language"), subj.ObsPost("language"), subj.Latent(), subj.EGrad("language"), subj.Belief(), subj.Step()}
	for _, s := range forged {
		vision.Publish(s, []byte("forged"))
	}
	vision.Publish(subj.Said("vision"), []byte("allowed")) // last: once it arrives, the others would have
	awaitOnly(t, ctx, seen, forged, subj.Said("vision"), "vision")

	// Nor can the admin key, which hears everything, drive training: its
	// steps, latents, expert gradients, controls, posteriors and decoder
	// gradients are dropped by the server; a belief (replay's) passes.
	forged = []string{subj.Step(), subj.Latent(), subj.EGrad("vision"), subj.Control("vision"), subj.Post("vision"), subj.ZGrad("language")}
	for _, s := range forged {
		admin.Publish(s, []byte("forged"))
	}
	admin.Publish(subj.Belief(), []byte("allowed"))
	awaitOnly(t, ctx, seen, forged, subj.Belief(), "admin")
}

// awaitOnly reads seen until a message on last arrives (sent after the
// forged ones, on one connection, so they would have arrived first) and
// fails the test for every forged message among them.
func awaitOnly(t *testing.T, ctx context.Context, seen chan *nats.Msg, forged []string, last, who string) {
	t.Helper()
	for {
		select {
		case m := <-seen:
			if slices.Contains(forged, m.Subject) && string(m.Data) == "forged" {
				t.Errorf("the %s key published on %s", who, m.Subject)
			}
			if m.Subject == last && string(m.Data) == "allowed" {
				return
			}
		case <-ctx.Done():
			t.Fatalf("the %s key's allowed message never arrived", who)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// serket keys prints an authorization block a real nats-server accepts and
// that holds each key to what serket up --secure allows it.
func TestKeysConfigForOwnServer(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys")
	out, err := exec.Command(serketBin, "keys", "--key-dir", keys, "../../examples/robot/pipeline.yaml").Output()
	if err != nil {
		t.Fatalf("serket keys: %v\n%s", err, out)
	}
	conf := writeFile(t, "nats.conf", "listen: 127.0.0.1:-1\n"+string(out))
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("nats-server refuses the block: %v\n%s", err, out)
	}
	p, err := launch.Load("../../examples/robot/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	users, files, err := pipelineKeys(p, keys) // the same keys, reused
	if err != nil {
		t.Fatal(err)
	}
	if len(opts.Nkeys) != len(users) {
		t.Fatalf("%d users in the block, want %d", len(opts.Nkeys), len(users))
	}
	for i, u := range users {
		nk := opts.Nkeys[i]
		pub, sub := nk.Permissions.Publish, nk.Permissions.Subscribe
		wantPub := u.Permissions.Publish
		if len(wantPub) == 0 {
			wantPub = nil
		}
		if nk.Nkey != u.NKey || !slices.Equal(pub.Allow, wantPub) || !slices.Equal(sub.Allow, u.Permissions.Subscribe) ||
			len(wantPub) > 0 && !slices.Equal(pub.Deny, u.Permissions.PublishDeny) ||
			(nk.Permissions.Response != nil) != u.Permissions.Responses {
			t.Errorf("%s: the server reads %+v %+v %+v, want %+v", u.Name, pub, sub, nk.Permissions.Response, u.Permissions)
		}
	}
	opts.NoLog, opts.NoSigs = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	if nc, err := bus.Connect(bus.ConnConfig{URL: ns.ClientURL(), Name: "vision", NKeyFile: files["vision"], Wait: 5 * time.Second}); err != nil {
		t.Errorf("vision's key on the configured server: %v", err)
	} else {
		nc.Close()
	}
	if _, err := bus.Connect(bus.ConnConfig{URL: ns.ClientURL(), Name: "stranger", Wait: time.Second}); err == nil {
		t.Error("a client without a key got in")
	}
}

// TestKeysOfAPriorModule: under --secure a pipeline's prior module gets a
// key of its own with a module's permissions (it hears its training
// subject), and no key but the integrator's may publish there.
func TestKeysOfAPriorModule(t *testing.T) {
	p, err := launch.Load(writeFile(t, "p.yaml", "modules: [{name: vision}]\nprior: {name: concept}\n"))
	if err != nil {
		t.Fatal(err)
	}
	users, files, err := pipelineKeys(p, filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	subj, _ := bus.NewSubjects(p.Name)
	perms := map[string]bus.Permissions{}
	for _, u := range users {
		perms[u.Name] = u.Permissions
	}
	if files["concept"] == "" || !slices.Contains(perms["concept"].Subscribe, subj.PriorTrain("concept")) {
		t.Fatalf("the prior module's key %q, subscriptions %v: want a key that hears %s", files["concept"], perms["concept"].Subscribe, subj.PriorTrain("concept"))
	}
	for name, p := range perms {
		allowed := slices.ContainsFunc(p.Publish, func(s string) bool { return s == ">" || strings.HasSuffix(s, ".train.prior.*") })
		denied := slices.ContainsFunc(p.PublishDeny, func(s string) bool { return strings.HasSuffix(s, ".train.prior.*") })
		if allowed && !denied && name != "integrator" {
			t.Errorf("%s may publish on the prior module's training subject", name)
		}
	}
}
