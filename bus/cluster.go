package bus

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ClusterConfig configures StartCluster.
type ClusterConfig struct {
	Name string // the cluster's name (every node's must match); default "serket"
	Host string // where client and route listeners bind; default 127.0.0.1

	// Port 0 gives every node a random free client port; otherwise node i
	// listens for clients on Port+i. RoutePort does the same for the route
	// (cluster) listeners.
	Port, RoutePort int

	// Ready bounds how long StartCluster (and Restart) wait for a node to
	// accept clients, and then for the routes to form; default 10 s.
	Ready time.Duration
	Debug bool // let the servers log to stderr
}

// Cluster is a NATS cluster of nats-servers embedded in this process, joined
// by a full mesh of routes: what several machines' servers would be, on one
// machine. Tests use it to run a pipeline whose processes are connected to
// different servers; `go run` programs can use it to try a cluster without
// configuring one. Its methods are safe for concurrent use.
type Cluster struct {
	cfg   ClusterConfig
	mu    sync.Mutex
	nodes []*clusterNode
}

type clusterNode struct {
	name       string
	port       int     // the client port, fixed once the node first listened
	routePort  int     // the route port, likewise
	srv        *Server // nil while stopped
	poolRoutes int     // route connections this node keeps to each other node
}

// StartCluster starts n embedded nats-servers, each with its own client
// port and a route to every other, and waits until every node has routes to
// all the others (so that interest and messages flow between any two). The
// caller must Shutdown it. JetStream is not offered: a JetStream cluster
// needs a store and a meta-group leader per node, which serket does not use.
func StartCluster(n int, cfg ClusterConfig) (*Cluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("bus: a cluster of %d nodes: want at least 1", n)
	}
	if cfg.Name == "" {
		cfg.Name = "serket"
	}
	if strings.ContainsAny(cfg.Name, " \t\n") {
		return nil, fmt.Errorf("bus: cluster name %q: want no spaces", cfg.Name)
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Ready <= 0 {
		cfg.Ready = 10 * time.Second
	}
	c := &Cluster{cfg: cfg}
	for i := 0; i < n; i++ {
		nd := &clusterNode{name: fmt.Sprintf("%s-%d", cfg.Name, i)}
		if cfg.Port != 0 {
			nd.port = cfg.Port + i
		}
		if cfg.RoutePort != 0 {
			nd.routePort = cfg.RoutePort + i
		}
		c.nodes = append(c.nodes, nd)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Node i solicits routes to nodes 0..i-1, so every pair has one
	// explicit route: a full mesh without relying on gossip.
	for i := range c.nodes {
		if err := c.startLocked(i, c.nodes[:i]); err != nil {
			c.shutdownLocked()
			return nil, err
		}
	}
	if err := c.waitRoutesLocked(cfg.Ready); err != nil {
		c.shutdownLocked()
		return nil, err
	}
	return c, nil
}

// startLocked starts node i with routes to peers (which must be running or
// have run, so that their route ports are known).
func (c *Cluster) startLocked(i int, peers []*clusterNode) error {
	nd := c.nodes[i]
	opts := &server.Options{
		ServerName: nd.name,
		Host:       c.cfg.Host,
		Port:       nd.port,
		NoLog:      !c.cfg.Debug,
		NoSigs:     true,
		Cluster: server.ClusterOpts{
			Name: c.cfg.Name,
			Host: c.cfg.Host,
			Port: nd.routePort,
		},
	}
	if opts.Port == 0 {
		opts.Port = server.RANDOM_PORT
	}
	if opts.Cluster.Port == 0 {
		opts.Cluster.Port = server.RANDOM_PORT
	}
	for _, p := range peers {
		if p != nd && p.routePort != 0 {
			opts.Routes = append(opts.Routes, &url.URL{Scheme: "nats", Host: net.JoinHostPort(c.cfg.Host, strconv.Itoa(p.routePort))})
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("bus: cluster node %s: %w", nd.name, err)
	}
	if c.cfg.Debug {
		ns.ConfigureLogger()
	}
	go ns.Start()
	if !ns.ReadyForConnections(c.cfg.Ready) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return fmt.Errorf("bus: cluster node %s (client port %s, route port %s) not ready after %v (is a port in use?)",
			nd.name, portString(nd.port), portString(nd.routePort), c.cfg.Ready)
	}
	// NewServer filled in the defaults: a pool of route connections per
	// peer, plus one per pinned account (the system account's).
	nd.poolRoutes = 1
	if ps := opts.Cluster.PoolSize; ps > 0 {
		nd.poolRoutes = ps + len(opts.Cluster.PinnedAccounts)
	}
	if a, ok := ns.Addr().(*net.TCPAddr); ok {
		nd.port = a.Port
	}
	if a := ns.ClusterAddr(); a != nil {
		nd.routePort = a.Port
	}
	nd.srv = &Server{Server: ns}
	return nil
}

func portString(p int) string {
	if p == 0 {
		return "random"
	}
	return strconv.Itoa(p)
}

// WaitRoutes waits until every running node has its full set of route
// connections to every other running node, or within passes; the error
// names the nodes that do not yet see all the others.
func (c *Cluster) WaitRoutes(within time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waitRoutesLocked(within)
}

func (c *Cluster) waitRoutesLocked(within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		var running []*clusterNode
		for _, nd := range c.nodes {
			if nd.srv != nil {
				running = append(running, nd)
			}
		}
		var behind []string
		for _, nd := range running {
			peers := len(running) - 1
			remotes, routes := nd.srv.NumRemotes(), nd.srv.NumRoutes()
			if remotes != peers || routes != peers*nd.poolRoutes {
				behind = append(behind, fmt.Sprintf("%s sees %d of %d other nodes (%d of %d route connections)", nd.name, remotes, peers, routes, peers*nd.poolRoutes))
			}
		}
		if len(behind) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bus: cluster %q: routes not formed within %v: %s", c.cfg.Name, within, strings.Join(behind, "; "))
		}
		time.Sleep(5 * time.Millisecond) // polling the servers' route tables
	}
}

// Len is the number of nodes, running or stopped.
func (c *Cluster) Len() int { return len(c.nodes) }

// Node returns node i's server (0 ≤ i < Len()), or nil while it is stopped.
func (c *Cluster) Node(i int) *Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].srv
}

// URLs returns every node's client URL, in node order (a stopped node's
// too: its port is kept for Restart).
func (c *Cluster) URLs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.nodes))
	for i, nd := range c.nodes {
		out[i] = (&url.URL{Scheme: "nats", Host: net.JoinHostPort(c.cfg.Host, strconv.Itoa(nd.port))}).String()
	}
	return out
}

// URL returns every node's client URL joined by commas, which Connect (and
// NATS_URL, and --nats) accept as a list of servers to try.
func (c *Cluster) URL() string { return strings.Join(c.URLs(), ",") }

// RouteURLs returns every node's route URL, in node order: what another
// server's routes would list to join the cluster.
func (c *Cluster) RouteURLs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.nodes))
	for i, nd := range c.nodes {
		out[i] = (&url.URL{Scheme: "nats", Host: net.JoinHostPort(c.cfg.Host, strconv.Itoa(nd.routePort))}).String()
	}
	return out
}

// Stop shuts node i down and waits until it has stopped. Its clients
// reconnect to another node (the cluster advertises every node's client
// URL to them); the others keep their routes to it and retry them, so
// Restart brings it back on the same ports.
func (c *Cluster) Stop(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < 0 || i >= len(c.nodes) {
		return fmt.Errorf("bus: cluster %q has no node %d", c.cfg.Name, i)
	}
	nd := c.nodes[i]
	if nd.srv == nil {
		return fmt.Errorf("bus: cluster node %s is already stopped", nd.name)
	}
	nd.srv.Shutdown()
	nd.srv = nil
	return nil
}

// Restart starts a stopped node i again on its former ports, with routes to
// every other node, and waits until the running nodes form a full mesh
// again.
func (c *Cluster) Restart(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < 0 || i >= len(c.nodes) {
		return fmt.Errorf("bus: cluster %q has no node %d", c.cfg.Name, i)
	}
	if c.nodes[i].srv != nil {
		return fmt.Errorf("bus: cluster node %s is running", c.nodes[i].name)
	}
	if err := c.startLocked(i, c.nodes); err != nil {
		return err
	}
	return c.waitRoutesLocked(c.cfg.Ready)
}

// Shutdown stops every running node and waits for them.
func (c *Cluster) Shutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.shutdownLocked()
}

func (c *Cluster) shutdownLocked() {
	// Shut down in parallel: a node that shuts down alone would otherwise
	// see its peers' routes drop one by one and try to reconnect them.
	var wg sync.WaitGroup
	for _, nd := range c.nodes {
		if nd.srv != nil {
			wg.Add(1)
			go func(s *Server) { defer wg.Done(); s.Shutdown() }(nd.srv)
			nd.srv = nil
		}
	}
	wg.Wait()
}

// WaitInterest waits until every running node knows of a subscription
// matching subject, or within passes. A subscriber's Flush only makes sure
// its own node has the subscription; the other nodes learn of it over the
// routes a little later, and until then a request published on them gets
// no responders and a message published on them is not forwarded.
func (c *Cluster) WaitInterest(subject string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c.mu.Lock()
		var without []string
		for _, nd := range c.nodes {
			if nd.srv != nil && !nd.srv.GlobalAccount().SubscriptionInterest(subject) {
				without = append(without, nd.name)
			}
		}
		c.mu.Unlock()
		if len(without) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bus: cluster %q: no interest in %s on %s within %v", c.cfg.Name, subject, strings.Join(without, ", "), within)
		}
		time.Sleep(2 * time.Millisecond) // polling the servers' subscription tables
	}
}
