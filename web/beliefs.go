package web

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
)

// beliefView is the belief event: the latest streaming belief.
type beliefView struct {
	Seq     uint64       `json:"seq"`
	TimeMs  int64        `json:"t_ms"`
	Sources []sourceView `json:"sources"`
	Prior   string       `json:"prior,omitempty"`
	Concept int32        `json:"concept"`
	Mu      []float32    `json:"mu"`
}

type sourceView struct {
	Module string  `json:"module"`
	AgeMs  float64 `json:"age_ms"`
}

// saidView is the said event: the latest rendering of a belief by one
// module. Text comes inline; anything else the page fetches from URL.
type saidView struct {
	Module string `json:"module"`
	Seq    uint64 `json:"seq"`
	Type   string `json:"type"`
	Text   string `json:"text,omitempty"`
	URL    string `json:"url,omitempty"`
	Bytes  int    `json:"bytes"`
}

// said is a rendering as the Hub keeps it.
type said struct {
	view saidView
	data []byte
	sent time.Time
	new  bool
}

// beliefBook holds the latest belief and each module's latest rendering.
type beliefBook struct {
	latest     *beliefView
	beliefNew  bool
	beliefSent time.Time
	said       map[string]*said
}

// The pages get at most five beliefs a second and two renderings a
// second of each module: the latest wins.
const (
	beliefEvery = 200 * time.Millisecond
	saidEvery   = 500 * time.Millisecond
	// muShown is how many dimensions of a belief's mean the page draws.
	muShown = 32
)

func newBeliefBook() *beliefBook { return &beliefBook{said: map[string]*said{}} }

func (b *beliefBook) setBelief(m *bus.Belief) {
	v := &beliefView{Seq: m.Seq, TimeMs: m.Time / 1e6, Prior: m.Prior, Concept: m.Concept, Mu: append([]float32{}, m.Mu.Data[:min(len(m.Mu.Data), muShown)]...)}
	if m.Prior == "" {
		v.Concept = -1
	}
	for _, s := range m.Sources {
		v.Sources = append(v.Sources, sourceView{Module: s.Module, AgeMs: float64(s.AgeNs) / 1e6})
	}
	b.latest, b.beliefNew = v, true
}

func (b *beliefBook) belief() (beliefView, bool) {
	if b.latest == nil {
		return beliefView{}, false
	}
	return *b.latest, true
}

func (b *beliefBook) changedBelief(now time.Time) (beliefView, bool) {
	if !b.beliefNew || now.Sub(b.beliefSent) < beliefEvery {
		return beliefView{}, false
	}
	b.beliefNew, b.beliefSent = false, now
	return *b.latest, true
}

// setSaid keeps module's rendering of belief seq.
func (b *beliefBook) setSaid(module string, seq uint64, out bus.Payload) {
	v := saidView{Module: module, Seq: seq, Type: out.Type, Bytes: len(out.Data)}
	switch {
	case strings.HasPrefix(out.Type, "text/"):
		v.Text = strings.ToValidUTF8(string(out.Data[:min(len(out.Data), 2000)]), "�")
	case displayable(out.Type):
		v.URL = fmt.Sprintf("/api/said/%s?seq=%d", module, seq)
	}
	s := b.said[module]
	if s == nil {
		s = &said{}
		b.said[module] = s
	}
	s.view, s.data, s.new = v, out.Data, true
}

func (b *beliefBook) changedSaid(now time.Time) []saidView {
	var out []saidView
	for _, s := range b.said {
		if s.new && now.Sub(s.sent) >= saidEvery {
			s.new, s.sent = false, now
			out = append(out, s.view)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Module < out[j].Module })
	return out
}

func (b *beliefBook) allSaid() []saidView {
	var out []saidView
	for _, s := range b.said {
		out = append(out, s.view)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Module < out[j].Module })
	return out
}

// displayable reports whether a browser may be given a rendering of this
// media type to show: images and sound it decodes itself, never markup or
// script (a forged rendering of type text/html would otherwise run on the
// page's origin).
func displayable(typ string) bool {
	switch baseType(typ) {
	case "image/png", "image/jpeg", "image/gif", "audio/wav", "audio/x-wav", "audio/wave":
		return true
	}
	return false
}

// baseType is a media type without its parameters, in lower case:
// "image/png" of "image/PNG; x=y".
func baseType(typ string) string {
	t, _, _ := strings.Cut(typ, ";")
	return strings.ToLower(strings.TrimSpace(t))
}

// onBelief keeps the latest belief.
func (h *Hub) onBelief(m *nats.Msg) {
	var b bus.Belief
	if err := bus.UnmarshalFrom(m.Subject, m.Data, &b, bus.Expect{Latent: h.latentSize()}); err != nil {
		h.refuse("belief", m.Subject, err)
		return
	}
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.beliefs.setBelief(&b)
	group := "belief"
	if b.Prior != "" && b.Concept >= 0 {
		group = fmt.Sprintf("concept %d", b.Concept)
	}
	h.latent.add(group, b.Mu.Data)
	h.nodes.heard("integrator", now)
}

// onSaid keeps what a module renders of a belief. A rendering must be
// published by the module its subject names.
func (h *Hub) onSaid(m *nats.Msg) {
	var d bus.DecodeReply
	module, ok := h.fromModule("said", m, &d, &d.Sender, bus.Expect{})
	if !ok || len(d.Outputs) == 0 {
		return
	}
	seq, _ := strconv.ParseUint(m.Header.Get(bus.HeaderSeq), 10, 64)
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.beliefs.setSaid(module, seq, d.Outputs[0])
	h.nodes.heard(module, now)
}

// fromModule decodes into msg what a module published on a subject that
// ends in its name (msg's sender is *sender once decoded). It refuses,
// counting it as kind, a message that does not decode or that another
// sender published under that name.
func (h *Hub) fromModule(kind string, m *nats.Msg, msg bus.Message, sender *string, e bus.Expect) (module string, ok bool) {
	if err := bus.UnmarshalFrom(m.Subject, m.Data, msg, e); err != nil {
		h.refuse(kind, m.Subject, err)
		return "", false
	}
	module = senderOf(m.Subject)
	if *sender != module {
		h.refuse(kind, m.Subject, fmt.Errorf("sent by %q under module %q's name", *sender, module))
		return "", false
	}
	return module, true
}

// said serves a module's latest rendering that is not text, by its media
// type, and only of the types a browser may show.
func (s *Server) said(w http.ResponseWriter, r *http.Request) {
	module := r.PathValue("module")
	s.hub.mu.Lock()
	var v saidView
	var data []byte
	if sd := s.hub.beliefs.said[module]; sd != nil {
		v, data = sd.view, sd.data
	}
	s.hub.mu.Unlock()
	if data == nil || v.URL == "" {
		http.Error(w, fmt.Sprintf("module %q has said nothing that can be shown", module), http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", v.Type)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(data)
}
