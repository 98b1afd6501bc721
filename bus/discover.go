package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Service is one running instance of a serket micro service as discovery saw it.
type Service struct {
	micro.Info
	Stats *micro.Stats // nil unless asked for and answered
	RTT   time.Duration
}

// Module is the module name from the metadata ("" for the integrator).
func (s Service) Module() string { return s.Metadata[MetaModule] }

// Role is "module" or "integrator".
func (s Service) Role() string { return s.Metadata[MetaRole] }

// DiscoverConfig says what Discover looks for.
type DiscoverConfig struct {
	Pipeline string        // only services of this pipeline ("" = default)
	Window   time.Duration // how long to collect replies; default 250ms
	Stats    bool          // also collect $SRV.STATS
}

// Discover asks every micro service on the bus for its INFO (and STATS) and
// returns the serket services of one pipeline, sorted by name and id.
// Services that answer but are of another pipeline or wire version are
// left out. It waits the whole window: there is no way to know that every
// service has answered.
func Discover(ctx context.Context, nc *nats.Conn, cfg DiscoverConfig) ([]Service, error) {
	if cfg.Pipeline == "" {
		cfg.Pipeline = DefaultPipeline
	}
	if cfg.Window <= 0 {
		cfg.Window = 250 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Window)
	defer cancel()

	type reply struct {
		verb string
		data []byte
		rtt  time.Duration
	}
	replies := make(chan reply, 256)
	start := time.Now()
	var subs []*nats.Subscription
	defer func() {
		for _, s := range subs {
			s.Unsubscribe()
		}
	}()
	ask := func(verb micro.Verb) error {
		subj, err := micro.ControlSubject(verb, "", "")
		if err != nil {
			return err
		}
		inbox := nc.NewRespInbox()
		name := verb.String()
		sub, err := nc.Subscribe(inbox, func(m *nats.Msg) {
			select {
			case replies <- reply{name, m.Data, time.Since(start)}:
			default: // more services than we can take in one window: drop, next poll sees them
			}
		})
		if err != nil {
			return err
		}
		subs = append(subs, sub)
		return nc.PublishRequest(subj, inbox, nil)
	}
	if err := ask(micro.InfoVerb); err != nil {
		return nil, fmt.Errorf("bus: discover: %w", err)
	}
	if cfg.Stats {
		if err := ask(micro.StatsVerb); err != nil {
			return nil, fmt.Errorf("bus: discover: %w", err)
		}
	}
	if err := nc.Flush(); err != nil {
		return nil, fmt.Errorf("bus: discover: %w", err)
	}

	byID := map[string]*Service{}
	stats := map[string]*micro.Stats{}
	wire := fmt.Sprint(WireVersion)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case r := <-replies:
			switch r.verb {
			case micro.InfoVerb.String():
				var info micro.Info
				if json.Unmarshal(r.data, &info) != nil || !strings.HasPrefix(info.Name, "serket-") {
					continue
				}
				if info.Metadata[MetaPipeline] != cfg.Pipeline || info.Metadata[MetaWire] != wire {
					continue
				}
				byID[info.ID] = &Service{Info: info, RTT: r.rtt}
			case micro.StatsVerb.String():
				var st micro.Stats
				if json.Unmarshal(r.data, &st) == nil {
					stats[st.ID] = &st
				}
			}
		}
	}
	out := make([]Service, 0, len(byID))
	for id, s := range byID {
		s.Stats = stats[id]
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}
