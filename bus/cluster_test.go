package bus_test

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
)

// startCluster starts an n-node cluster and shuts it down when the test ends.
func startCluster(t *testing.T, n int, cfg bus.ClusterConfig) *bus.Cluster {
	t.Helper()
	start := time.Now()
	c, err := bus.StartCluster(n, cfg)
	if err != nil {
		t.Fatalf("StartCluster(%d): %v", n, err)
	}
	t.Logf("%d-node cluster formed in %v", n, time.Since(start).Round(time.Millisecond))
	t.Cleanup(c.Shutdown)
	return c
}

// clusterConn connects to url and closes the connection when the test ends
// (before the cluster, started earlier, is shut down).
func clusterConn(t *testing.T, url, name string) *nats.Conn {
	t.Helper()
	nc, err := bus.Connect(bus.ConnConfig{URL: url, Name: name, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("Connect(%s): %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// subscribeOn subscribes on nc, makes sure nc's node has the subscription,
// and waits until every node of c knows of it.
func subscribeOn(t *testing.T, c *bus.Cluster, nc *nats.Conn, subject string, h nats.MsgHandler) *nats.Subscription {
	t.Helper()
	sub, err := nc.Subscribe(subject, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitInterest(subject, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	return sub
}

func TestClusterRoutesForm(t *testing.T) {
	c := startCluster(t, 3, bus.ClusterConfig{})
	if c.Len() != 3 {
		t.Fatalf("Len() = %d, want 3", c.Len())
	}
	urls, routes := c.URLs(), c.RouteURLs()
	if len(urls) != 3 || len(routes) != 3 {
		t.Fatalf("URLs %v, route URLs %v: want 3 of each", urls, routes)
	}
	seen := map[string]bool{}
	for i := range 3 {
		s := c.Node(i)
		if s == nil {
			t.Fatalf("node %d is not running", i)
		}
		if got := s.NumRemotes(); got != 2 {
			t.Errorf("node %d has routes to %d other nodes, want 2", i, got)
		}
		if s.ClusterName() != "serket" {
			t.Errorf("node %d is in cluster %q, want serket", i, s.ClusterName())
		}
		if s.ClientURL() != urls[i] {
			t.Errorf("node %d: ClientURL %s, URLs()[%d] %s", i, s.ClientURL(), i, urls[i])
		}
		for _, u := range []string{urls[i], routes[i]} {
			if seen[u] || !strings.HasPrefix(u, "nats://127.0.0.1:") {
				t.Errorf("URL %s: want a distinct loopback URL per node and listener", u)
			}
			seen[u] = true
		}
	}
	if want := strings.Join(urls, ","); c.URL() != want {
		t.Errorf("URL() = %q, want %q", c.URL(), want)
	}
	// A connection to the list of URLs works, as --nats and NATS_URL take it.
	clusterConn(t, c.URL(), "list")
}

// TestClusterCarriesMessagesAcrossNodes: published on node 1, received on
// node 3, in order; and a subscriber on the publisher's own node too.
func TestClusterCarriesMessagesAcrossNodes(t *testing.T) {
	c := startCluster(t, 3, bus.ClusterConfig{})
	urls := c.URLs()
	pub, far, near := clusterConn(t, urls[0], "pub"), clusterConn(t, urls[2], "far"), clusterConn(t, urls[0], "near")
	const n = 200
	farCh, nearCh := make(chan *nats.Msg, n), make(chan *nats.Msg, n)
	subscribeOn(t, c, far, "serket.v2.test.cross", func(m *nats.Msg) { farCh <- m })
	subscribeOn(t, c, near, "serket.v2.test.cross", func(m *nats.Msg) { nearCh <- m })
	for i := range n {
		if err := pub.Publish("serket.v2.test.cross", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]chan *nats.Msg{"node 3": farCh, "node 1": nearCh} {
		for i := range n {
			select {
			case m := <-ch:
				if string(m.Data) != strconv.Itoa(i) {
					t.Fatalf("subscriber on %s: message %d is %q: want them in publishing order", name, i, m.Data)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("subscriber on %s: %d of %d messages within 5 s", name, i, n)
			}
		}
	}
}

// TestClusterRequestReplyAcrossNodes: a requester on node 1, a responder on
// node 3, and replies with headers (as micro's errors travel) intact.
func TestClusterRequestReplyAcrossNodes(t *testing.T) {
	c := startCluster(t, 3, bus.ClusterConfig{})
	urls := c.URLs()
	req, rep := clusterConn(t, urls[0], "requester"), clusterConn(t, urls[2], "responder")
	subscribeOn(t, c, rep, "serket.v2.test.echo", func(m *nats.Msg) {
		out := nats.NewMsg(m.Reply)
		out.Data = append([]byte("echo "), m.Data...)
		out.Header.Set("Served-By", "node-3")
		m.RespondMsg(out)
	})
	for i := range 20 {
		m, err := req.Request("serket.v2.test.echo", []byte(strconv.Itoa(i)), 5*time.Second)
		if err != nil {
			t.Fatalf("request %d across nodes: %v", i, err)
		}
		if string(m.Data) != "echo "+strconv.Itoa(i) || m.Header.Get("Served-By") != "node-3" {
			t.Fatalf("reply %d: %q, headers %v", i, m.Data, m.Header)
		}
	}
}

// TestClusterNoResponders: a request nobody in the cluster serves fails at
// once with ErrNoResponders, not at its timeout, whichever node it is sent
// on; and so does one whose only responder (on another node) has left.
func TestClusterNoResponders(t *testing.T) {
	c := startCluster(t, 3, bus.ClusterConfig{})
	urls := c.URLs()
	for i, u := range urls {
		nc := clusterConn(t, u, "requester")
		start := time.Now()
		_, err := nc.Request("serket.v2.test.nobody", nil, 5*time.Second)
		if !errors.Is(err, nats.ErrNoResponders) {
			t.Fatalf("request on node %d to a subject nobody serves: %v, want ErrNoResponders", i+1, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("no responders took %v: want it well before the 5 s timeout", d)
		}
	}
	req, rep := clusterConn(t, urls[0], "requester"), clusterConn(t, urls[2], "responder")
	sub := subscribeOn(t, c, rep, "serket.v2.test.leaving", func(m *nats.Msg) { m.Respond([]byte("here")) })
	if _, err := req.Request("serket.v2.test.leaving", nil, 5*time.Second); err != nil {
		t.Fatalf("with a responder on node 3: %v", err)
	}
	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if err := rep.Flush(); err != nil {
		t.Fatal(err)
	}
	// Node 1 learns that the interest is gone over the route, a moment after
	// node 3 does; wait for it, then node 1 answers no responders itself.
	deadline := time.Now().Add(5 * time.Second)
	for c.Node(0).GlobalAccount().SubscriptionInterest("serket.v2.test.leaving") {
		if time.Now().After(deadline) {
			t.Fatal("node 1 still sees interest 5 s after the only subscriber (on node 3) left")
		}
		time.Sleep(2 * time.Millisecond) // polling the server's subscription table
	}
	if _, err := req.Request("serket.v2.test.leaving", nil, 5*time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("after the responder on node 3 left: %v, want ErrNoResponders", err)
	}
}

// TestClusterNodeStopAndRestart: a client of a node that stops reconnects
// to another (the cluster told it of them), keeps its subscriptions, and
// the node restarts on its own ports and rejoins the mesh.
func TestClusterNodeStopAndRestart(t *testing.T) {
	c := startCluster(t, 3, bus.ClusterConfig{Ready: 5 * time.Second})
	urls := c.URLs()
	pub := clusterConn(t, urls[0], "pub")
	mover := clusterConn(t, urls[1], "mover")
	got := make(chan string, 16)
	subscribeOn(t, c, mover, "serket.v2.test.move", func(m *nats.Msg) { got <- string(m.Data) })
	if servers := mover.DiscoveredServers(); len(servers) != 2 {
		t.Fatalf("a client of node 2 was told of %v: want the other two nodes", servers)
	}

	if err := c.Stop(1); err != nil {
		t.Fatal(err)
	}
	if c.Node(1) != nil {
		t.Fatal("node 2 still running after Stop")
	}
	if err := c.Stop(1); err == nil {
		t.Fatal("stopping a stopped node succeeded")
	}
	if err := c.WaitRoutes(5 * time.Second); err != nil {
		t.Fatalf("the two nodes left: %v", err)
	}
	// The client reconnects to another node and resubscribes; a message
	// published once the subscription is known everywhere reaches it.
	deadline := time.Now().Add(10 * time.Second)
	for !mover.IsConnected() || mover.ConnectedUrl() == urls[1] {
		if time.Now().After(deadline) {
			t.Fatalf("the client of the stopped node did not reconnect elsewhere within 10 s (status %v)", mover.Status())
		}
		time.Sleep(5 * time.Millisecond) // polling the connection's state
	}
	if err := mover.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitInterest("serket.v2.test.move", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish("serket.v2.test.move", []byte("after")); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != "after" {
			t.Fatalf("got %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the moved client (now on %s) got nothing", mover.ConnectedUrl())
	}

	start := time.Now()
	if err := c.Restart(1); err != nil {
		t.Fatal(err)
	}
	t.Logf("node 2 restarted and rejoined in %v", time.Since(start).Round(time.Millisecond))
	if c.URLs()[1] != urls[1] || c.Node(1).ClientURL() != urls[1] {
		t.Fatalf("node 2 restarted on %s, want its former %s", c.Node(1).ClientURL(), urls[1])
	}
	if err := c.Restart(1); err == nil {
		t.Fatal("restarting a running node succeeded")
	}
	back := clusterConn(t, urls[1], "back")
	if _, err := back.Request("serket.v2.test.nobody", nil, time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("request on the restarted node: %v", err)
	}
	if err := back.Publish("serket.v2.test.move", []byte("from the restarted node")); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != "from the restarted node" {
			t.Fatalf("got %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a message published on the restarted node did not arrive")
	}
}

func TestClusterFixedPorts(t *testing.T) {
	base, routeBase := freePortRun(t, 2), freePortRun(t, 2)
	c := startCluster(t, 2, bus.ClusterConfig{Name: "fixed", Port: base, RoutePort: routeBase})
	want := []string{"nats://127.0.0.1:" + strconv.Itoa(base), "nats://127.0.0.1:" + strconv.Itoa(base+1)}
	if got := c.URLs(); !slices.Equal(got, want) {
		t.Fatalf("URLs %v, want %v", got, want)
	}
	wantRoutes := []string{"nats://127.0.0.1:" + strconv.Itoa(routeBase), "nats://127.0.0.1:" + strconv.Itoa(routeBase+1)}
	if got := c.RouteURLs(); !slices.Equal(got, wantRoutes) {
		t.Fatalf("route URLs %v, want %v", got, wantRoutes)
	}
	if c.Node(0).ClusterName() != "fixed" {
		t.Fatalf("cluster name %q", c.Node(0).ClusterName())
	}
}

// freePortRun returns the first of n consecutive ports nothing listens on
// (at the moment).
func freePortRun(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		var ls []net.Listener
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		first := l.Addr().(*net.TCPAddr).Port
		ok := true
		for i := 1; i < n && ok; i++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(first+i))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			l.Close()
		}
		if ok {
			return first
		}
	}
	t.Fatalf("no %d consecutive free ports", n)
	return 0
}

func TestClusterRefusesBadConfigAndBusyPorts(t *testing.T) {
	if _, err := bus.StartCluster(0, bus.ClusterConfig{}); err == nil || !strings.Contains(err.Error(), "at least 1") {
		t.Fatalf("a cluster of 0 nodes: %v", err)
	}
	if _, err := bus.StartCluster(2, bus.ClusterConfig{Name: "two words"}); err == nil {
		t.Fatal("a cluster name with a space was accepted")
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port
	start := time.Now()
	_, err = bus.StartCluster(2, bus.ClusterConfig{Port: port, Ready: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "port in use") || !strings.Contains(err.Error(), strconv.Itoa(port)) {
		t.Fatalf("a cluster on a busy port: %v, want an error naming the port", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("failing took %v", d)
	}
}
