package web

import (
	"encoding/json"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/serket-go/serket/bus"
)

// The health of a node.
const (
	healthOK       = "ok"       // it answered the latest discovery
	healthDown     = "down"     // it was seen, and no longer answers (or its process exited)
	healthStarting = "starting" // not seen yet, or started again and not answering yet
)

// nodeView is one process of the graph, as the page gets it.
type nodeView struct {
	Name       string   `json:"name"`
	Role       string   `json:"role"`
	Health     string   `json:"health"`
	ID         string   `json:"id,omitempty"`
	PID        int      `json:"pid,omitempty"`
	Host       string   `json:"host,omitempty"`
	Latent     int      `json:"latent,omitempty"`
	Private    int      `json:"private,omitempty"`
	Likelihood string   `json:"likelihood,omitempty"`
	BLAS       string   `json:"blas,omitempty"`
	UpS        float64  `json:"up_s,omitempty"`
	Restarts   int      `json:"restarts"`
	Requests   int      `json:"requests"`
	Errors     int      `json:"errors"`
	Rejected   int      `json:"rejected"`
	Missed     int      `json:"missed"` // training steps it did not answer in time
	ReqRate    float64  `json:"req_rate"`
	MsgRate    float64  `json:"msg_rate"`
	LastMsgAge *float64 `json:"last_msg_age_s"`
	LastError  string   `json:"last_error,omitempty"`
}

// node is what the Hub knows of one process.
type node struct {
	nodeView
	msgs    uint64    // messages counted in its stats at the last poll (Requests: its requests)
	polled  time.Time // when
	lastMsg time.Time // its latest message: counters moved, or one heard
	eventAt time.Time // the supervisor's latest word on it
	seen    bool      // it has answered discovery
}

// nodeBook is the graph: every process, by name.
type nodeBook struct {
	pipeline string
	nodes    map[string]*node
	dirty    bool
	sent     time.Time
}

func newNodeBook(pipeline string, expect []Process) *nodeBook {
	b := &nodeBook{pipeline: pipeline, nodes: map[string]*node{}, dirty: true}
	for _, p := range expect {
		b.nodes[p.Name] = &node{nodeView: nodeView{Name: p.Name, Role: p.Role, Health: healthStarting}}
	}
	return b
}

// servicesEvery limits the services events a page gets, bar the
// supervisor's news, which goes at once.
const servicesEvery = time.Second

// update takes a discovery round that began at began: every service that
// answered is up, every other one seen before is down. A round that began
// before the supervisor's latest word on a process says nothing of it.
func (b *nodeBook) update(svcs []bus.Service, began, now time.Time) {
	answered := map[string]bool{}
	for _, s := range newest(svcs) {
		name, role := s.Module(), s.Role()
		switch {
		case role == RoleIntegrator || name == "":
			name, role = "integrator", RoleIntegrator
		case role != RolePrior:
			role = RoleModule
		}
		n := b.nodes[name]
		if n == nil {
			n = &node{nodeView: nodeView{Name: name}}
			b.nodes[name] = n
		}
		answered[name] = true
		if began.Before(n.eventAt) {
			continue
		}
		n.Role = role
		if n.ID != "" && n.ID != s.ID {
			n.Restarts++
			n.msgs, n.polled = 0, time.Time{}
		}
		n.ID, n.Health, n.seen = s.ID, healthOK, true
		n.fromService(s, now)
	}
	for name, n := range b.nodes {
		if !answered[name] && n.seen && !began.Before(n.eventAt) {
			n.Health = healthDown
		}
	}
	b.dirty = true
}

// newest keeps, of each name's instances, the one that started last (an
// old one may still answer while it stops).
func newest(svcs []bus.Service) []bus.Service {
	by := map[string]bus.Service{}
	for _, s := range svcs {
		k := s.Module()
		if o, ok := by[k]; !ok || started(s).After(started(o)) {
			by[k] = s
		}
	}
	out := make([]bus.Service, 0, len(by))
	for _, s := range by {
		out = append(out, s)
	}
	return out
}

func started(s bus.Service) time.Time {
	if s.Stats == nil {
		return time.Time{}
	}
	return s.Stats.Started
}

// statsData is what serket's endpoints add to their micro stats: the
// training and streaming counters a module or the integrator reports.
type statsData struct {
	Messages  uint64 `json:"messages"`
	Rejected  uint64 `json:"rejected"`
	Refused   uint64 `json:"refused"`
	LastError string `json:"last_error"`
	Stream    *struct {
		Observations uint64            `json:"observations"`
		Posteriors   uint64            `json:"posteriors"`
		Beliefs      uint64            `json:"beliefs"`
		Bad          uint64            `json:"bad"`
		LastPostNs   int64             `json:"last_post_ns"`
		Rejected     map[string]uint64 `json:"rejected"`
	} `json:"stream"`
}

// fromService takes a service's metadata and stats; rates are the
// counters' change since the last poll.
func (n *node) fromService(s bus.Service, now time.Time) {
	md := s.Metadata
	n.Host, n.Likelihood, n.BLAS = md[bus.MetaHost], md[bus.MetaLikelihood], md[bus.MetaBLAS]
	n.PID, n.Latent, n.Private = atoi(md[bus.MetaPID]), atoi(md[bus.MetaLatent]), atoi(md[bus.MetaPrivate])
	if s.Stats == nil {
		return
	}
	n.UpS = now.Sub(s.Stats.Started).Seconds()
	var reqs, errs, rejected int
	var msgs uint64
	var lastPost int64
	for _, e := range s.Stats.Endpoints {
		reqs += e.NumRequests
		errs += e.NumErrors
		if e.LastError != "" {
			n.LastError = e.Name + ": " + e.LastError
		}
		var d statsData
		if json.Unmarshal(e.Data, &d) != nil {
			continue
		}
		msgs += d.Messages
		rejected += int(d.Rejected + d.Refused)
		if d.LastError != "" {
			n.LastError = e.Name + ": " + d.LastError
		}
		if st := d.Stream; st != nil {
			msgs += st.Posteriors + st.Beliefs
			rejected += int(st.Bad)
			for _, v := range st.Rejected {
				rejected += int(v)
			}
			lastPost = max(lastPost, st.LastPostNs)
		}
	}
	if !n.polled.IsZero() {
		dt := now.Sub(n.polled).Seconds()
		n.ReqRate = float64(max(reqs-n.Requests, 0)) / dt
		n.MsgRate = float64(msgs-min(msgs, n.msgs)) / dt
		if reqs > n.Requests || msgs > n.msgs {
			n.lastMsg = now
		}
	}
	if lastPost > 0 {
		if t := time.Unix(0, lastPost); t.After(n.lastMsg) && !t.After(now) {
			n.lastMsg = t
		}
	}
	n.Requests, n.Errors, n.Rejected, n.msgs, n.polled = reqs, errs, rejected, msgs, now
	if len(n.LastError) > 300 {
		n.LastError = n.LastError[:300] + "…"
	}
}

// event takes the supervisor's word on a process: it exited (down) or
// was started again (starting, until it answers).
func (b *nodeBook) event(name string, up bool, now time.Time) {
	n := b.nodes[name]
	if n == nil {
		n = &node{nodeView: nodeView{Name: name, Role: RoleModule}}
		b.nodes[name] = n
	}
	if up {
		n.Health = healthStarting
	} else {
		n.Health = healthDown
	}
	b.dirty = true
	b.sent = time.Time{} // the page hears it at once
}

// heard notes a message from a module (a rendering, a posterior).
func (b *nodeBook) heard(name string, now time.Time) {
	if n := b.nodes[name]; n != nil {
		n.lastMsg = now
	}
}

// missed adds a training report's counts of the steps modules missed.
func (b *nodeBook) missed(counts map[string]int32) {
	for name, n := range counts {
		if nd := b.nodes[name]; nd != nil {
			nd.Missed += int(n)
			b.dirty = true
		}
	}
}

// modules are the names of the nodes of role module.
func (b *nodeBook) modules() []string {
	var out []string
	for name, n := range b.nodes {
		if n.Role == RoleModule {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// servicesView is the services event.
type servicesView struct {
	TimeMs   int64      `json:"time_ms"`
	Pipeline string     `json:"pipeline,omitempty"`
	Nodes    []nodeView `json:"nodes"`
}

func (b *nodeBook) view(now time.Time) servicesView {
	v := servicesView{TimeMs: now.UnixMilli(), Pipeline: b.pipeline, Nodes: []nodeView{}}
	for _, n := range b.nodes {
		nv := n.nodeView
		if !n.lastMsg.IsZero() {
			age := max(now.Sub(n.lastMsg).Seconds(), 0)
			nv.LastMsgAge = &age
		}
		v.Nodes = append(v.Nodes, nv)
	}
	sort.Slice(v.Nodes, func(i, j int) bool { return v.Nodes[i].Name < v.Nodes[j].Name })
	return v
}

func (b *nodeBook) changed(now time.Time) (servicesView, bool) {
	if !b.dirty || now.Sub(b.sent) < servicesEvery {
		return servicesView{}, false
	}
	b.dirty, b.sent = false, now
	return b.view(now), true
}

// atoi is a metadata number, 0 when a service gives none or garbage.
func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0
	}
	return n
}
