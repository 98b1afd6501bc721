package bus_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
)

// securedServer starts a server that admits only the given roles' keys,
// written under a temp dir; it returns the key file of each name.
func securedServer(t *testing.T, subj bus.Subjects, who map[string]bus.Role) (*bus.Server, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{}
	var users []bus.User
	for name, role := range who {
		k, err := bus.LoadOrCreateKey(filepath.Join(dir, name+".nk"))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = k.Path
		users = append(users, bus.User{Name: name, NKey: k.Public,
			Permissions: subj.Permissions(role, name, []string{"robot.camera"}, bus.InboxPrefix(k.Public))})
	}
	srv, err := bus.StartServer(bus.ServerConfig{Users: users})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv, files
}

func connectAs(t *testing.T, srv *bus.Server, name, key string) *nats.Conn {
	t.Helper()
	nc, err := bus.Connect(bus.ConnConfig{URL: srv.ClientURL(), Name: name, NKeyFile: key, Wait: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// collect subscribes and returns the subjects received so far.
func collect(t *testing.T, nc *nats.Conn, subject string) func() []string {
	t.Helper()
	var mu sync.Mutex
	var got []string
	if _, err := nc.Subscribe(subject, func(m *nats.Msg) {
		mu.Lock()
		got = append(got, m.Subject)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}

// waitSubject waits until seen() holds subject (messages from one
// connection arrive in the order sent, so anything sent before it has
// arrived too, or was dropped by the server).
func waitSubject(t *testing.T, seen func() []string, subject string) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := seen()
		for _, s := range got {
			if s == subject {
				return got
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never arrived; got %v", subject, got)
		}
		time.Sleep(5 * time.Millisecond) // polls the subscriber's record
	}
}

// On a secured server nobody without a key gets in, a module publishes
// only as itself, only the integrator publishes latents, and a client may
// only call inference.
func TestSecuredServerPermissions(t *testing.T) {
	subj, _ := bus.NewSubjects("sec")
	srv, key := securedServer(t, subj, map[string]bus.Role{
		"vision": bus.RoleModule, "audio": bus.RoleModule, "integrator": bus.RoleIntegrator,
		"client": bus.RoleClient, "admin": bus.RoleAdmin, "robot": bus.RoleSensor,
	})

	// No key, or a key the server does not know: refused, and said so.
	if _, err := bus.Connect(bus.ConnConfig{URL: srv.ClientURL(), Name: "stranger", Wait: time.Second}); err == nil || !strings.Contains(err.Error(), "refused our credentials") {
		t.Errorf("unauthenticated connect: %v, want a refusal", err)
	}
	other, err := bus.LoadOrCreateKey(filepath.Join(t.TempDir(), "other.nk"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Connect(bus.ConnConfig{URL: srv.ClientURL(), Name: "impostor", NKeyFile: other.Path, Wait: time.Second}); err == nil || !strings.Contains(err.Error(), "refused our credentials") {
		t.Errorf("unknown key: %v, want a refusal", err)
	}

	admin := connectAs(t, srv, "admin", key["admin"])
	seen := collect(t, admin, subj.Prefix()+".>")

	// vision publishes as audio and as the integrator, then as itself.
	vision := connectAs(t, srv, "vision", key["vision"])
	for _, s := range []string{subj.Post("audio"), subj.ZGrad("audio"), subj.Latent(), subj.EGrad("vision"), subj.Belief(), subj.Step(), subj.Post("vision")} {
		if err := vision.Publish(s, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if got := waitSubject(t, seen, subj.Post("vision")); len(got) != 1 {
		t.Errorf("the admin saw %v from vision; want only its own posterior", got)
	}

	// The integrator's latent reaches vision; the client's subscription to
	// it is refused, and so is anything it publishes but an inference.
	integ := connectAs(t, srv, "integrator", key["integrator"])
	client := connectAs(t, srv, "client", key["client"])
	visionLatents := collect(t, vision, subj.Latent())
	clientLatents := collect(t, client, subj.Latent())
	if _, err := integ.Subscribe(subj.Infer(), func(m *nats.Msg) { m.Respond([]byte("fused")) }); err != nil {
		t.Fatal(err)
	}
	integ.Flush()
	for _, s := range []string{subj.Post("vision"), subj.Latent(), subj.Step()} {
		client.Publish(s, []byte("x"))
	}
	if err := integ.Publish(subj.Latent(), []byte("z")); err != nil {
		t.Fatal(err)
	}
	rep, err := client.Request(subj.Infer(), []byte("q"), 5*time.Second)
	if err != nil || string(rep.Data) != "fused" {
		t.Fatalf("the client's inference: %v, %v", rep, err)
	}
	waitSubject(t, visionLatents, subj.Latent())
	if got := clientLatents(); len(got) != 0 {
		t.Errorf("the client heard latents %v", got)
	}
	waitSubject(t, seen, subj.Infer())
	got := waitSubject(t, seen, subj.Latent()) // two publishers: either order
	if want := []string{subj.Infer(), subj.Latent(), subj.Post("vision")}; !slices.Equal(slices.Sorted(slices.Values(got)), want) {
		t.Errorf("the admin saw %v; want nothing the client published but its inference", got)
	}

	// A module answers what the integrator asks it (one reply each), and
	// cannot hear another's replies.
	if _, err := vision.Subscribe(subj.Encode("vision"), func(m *nats.Msg) { m.Respond([]byte("posterior")) }); err != nil {
		t.Fatal(err)
	}
	vision.Flush()
	if rep, err := integ.Request(subj.Encode("vision"), []byte("x"), 5*time.Second); err != nil || string(rep.Data) != "posterior" {
		t.Fatalf("integrator → vision encode: %v, %v", rep, err)
	}
	snoop := collect(t, vision, "_INBOX.>")
	if rep, err := client.Request(subj.Infer(), []byte("q"), 5*time.Second); err != nil || string(rep.Data) != "fused" {
		t.Fatalf("second inference: %v, %v", rep, err)
	}
	vision.Flush()
	if got := snoop(); len(got) != 0 {
		t.Errorf("vision heard replies %v", got)
	}

	// A robot's drivers publish on sensor subjects only.
	robot := connectAs(t, srv, "robot", key["robot"])
	camera := collect(t, vision, "robot.camera")
	robot.Publish(subj.Post("vision"), []byte("x"))
	robot.Publish("robot.camera", []byte("frame"))
	waitSubject(t, camera, "robot.camera")
	admin.Flush()
	if got := seen(); len(got) != 5 { // …, encode.vision, the second inference
		t.Errorf("the admin saw %v; the robot published into the pipeline", got)
	}

	// The admin hears everything but drives no training: its steps,
	// latents, expert gradients, controls, posteriors and decoder
	// gradients are dropped; a belief (which replay may publish) passes.
	var hears []func() []string
	for _, s := range []string{subj.Step(), subj.Latent(), subj.EGrad("vision"), subj.Control("vision"), subj.Belief()} {
		hears = append(hears, collect(t, vision, s))
	}
	visionHears := func() (got []string) {
		for _, h := range hears {
			got = append(got, h()...)
		}
		return got
	}
	integHears := collect(t, integ, subj.Prefix()+".*.*")
	for _, s := range []string{subj.Step(), subj.Latent(), subj.EGrad("vision"), subj.Control("vision"), subj.Post("vision"), subj.ZGrad("vision"), subj.Belief()} {
		if err := admin.Publish(s, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if got := waitSubject(t, visionHears, subj.Belief()); len(got) != 1 {
		t.Errorf("vision heard %v from the admin; want only the belief", got)
	}
	integ.Flush()
	if got := integHears(); len(got) != 0 {
		t.Errorf("the integrator heard %v from the admin", got)
	}
}

// Key files: created 0600, reloaded the same, refused when readable by
// others or not a user seed.
func TestLoadOrCreateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "vision.nk")
	k, err := bus.LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || !strings.HasPrefix(k.Public, "U") {
		t.Fatalf("new key %+v, file %v, %v", k, fi.Mode(), err)
	}
	again, err := bus.LoadOrCreateKey(path)
	if err != nil || again != k {
		t.Fatalf("reloaded %+v, %v; want %+v", again, err, k)
	}
	os.Chmod(path, 0o644)
	if _, err := bus.LoadOrCreateKey(path); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Errorf("a world-readable seed: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.nk")
	os.WriteFile(bad, []byte("SUnotaseed\n"), 0o600)
	if _, err := bus.LoadOrCreateKey(bad); err == nil || !strings.Contains(err.Error(), "not an nkey seed") {
		t.Errorf("garbage seed: %v", err)
	}
}

// TestOnlyTheIntegratorReportsProgress: on a secured server the training
// progress reports that a live view draws come from the integrator alone;
// a module, a client, a sensor's drivers and an admin publish there in
// vain, and the admin hears the integrator's.
func TestOnlyTheIntegratorReportsProgress(t *testing.T) {
	subj, _ := bus.NewSubjects("sec")
	srv, key := securedServer(t, subj, map[string]bus.Role{
		"vision": bus.RoleModule, "integrator": bus.RoleIntegrator, "client": bus.RoleClient, "robot": bus.RoleSensor, "admin": bus.RoleAdmin,
	})
	admin := connectAs(t, srv, "admin", key["admin"])
	var mu sync.Mutex
	var got []string
	if _, err := admin.Subscribe(subj.TrainProgress(), func(m *nats.Msg) {
		mu.Lock()
		got = append(got, string(m.Data))
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := admin.Flush(); err != nil {
		t.Fatal(err)
	}
	heard := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
	// Each forger's report reaches the server (and is dropped or routed
	// to the admin) before its Flush returns, so before the integrator's.
	for _, forger := range []string{"vision", "client", "robot", "admin"} {
		nc := connectAs(t, srv, forger, key[forger])
		if err := nc.Publish(subj.TrainProgress(), []byte(forger)); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	integ := connectAs(t, srv, "integrator", key["integrator"])
	if err := integ.Publish(subj.TrainProgress(), []byte("integrator")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Contains(heard(), "integrator") {
		if time.Now().After(deadline) {
			t.Fatalf("the admin never heard the integrator's report; heard %v", heard())
		}
		time.Sleep(5 * time.Millisecond) // polls the subscriber's record
	}
	if h := heard(); !slices.Equal(h, []string{"integrator"}) {
		t.Errorf("the admin heard reports from %v; want the integrator's only", h)
	}
	for _, r := range []bus.Role{bus.RoleModule, bus.RoleClient, bus.RoleSensor, bus.RoleAdmin} {
		p := subj.Permissions(r, "vision", []string{"robot.camera"}, "_INBOX_X")
		if slices.Contains(p.Publish, subj.TrainProgress()) || slices.Contains(p.Publish, ">") && !slices.Contains(p.PublishDeny, subj.TrainProgress()) {
			t.Errorf("%v may publish on %s: %+v", r, subj.TrainProgress(), p)
		}
	}
}
