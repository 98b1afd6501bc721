package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/client"
)

func newLsCmd(g *globals) *cobra.Command {
	var (
		window  time.Duration
		rateFor time.Duration
		asJSON  bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "list the live services of a pipeline with health and stats",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			log := g.logger("ls")
			cc, err := g.clientConn("serket-ls", log)
			if err != nil {
				return err
			}
			cc.Wait = timeout
			nc, err := bus.Connect(cc)
			if err != nil {
				return err
			}
			defer nc.Close()
			c, err := client.New(nc, g.pipeline, "ls")
			if err != nil {
				return err
			}
			svcs, err := c.Services(context.Background(), window)
			if err != nil {
				return err
			}
			var before map[string]streamCounts
			if rateFor > 0 && !asJSON {
				// Streaming rates: the counts again after rateFor.
				before = map[string]streamCounts{}
				for _, s := range svcs {
					before[s.ID] = countsOf(s)
				}
				time.Sleep(rateFor) // the measuring interval itself
				if svcs, err = c.Services(context.Background(), window); err != nil {
					return err
				}
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(svcs)
			}
			if len(svcs) == 0 {
				return fmt.Errorf("no serket services of pipeline %q answered within %v on %s", g.pipeline, window, nc.ConnectedUrlRedacted())
			}
			printServices(os.Stdout, svcs)
			if before != nil {
				printStreaming(os.Stdout, svcs, before, rateFor)
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&window, "window", 300*time.Millisecond, "how long to wait for services to answer")
	cmd.Flags().DurationVar(&rateFor, "rate", time.Second, "measure streaming rates over this interval (0: skip the streaming table)")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long to keep trying to reach NATS")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the full INFO and STATS as JSON")
	return cmd
}

// printServices writes one row per service instance: who it is, how it
// answered (round trip of the discovery request), and its endpoints'
// counts of requests, errors and rejected messages.
func printServices(w io.Writer, svcs []bus.Service) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tID\tPID\tLATENT\tLIKELIHOOD\tBLAS\tUP\tRTT\tREQUESTS\tERRORS\tREJECTED\tLAST ERROR")
	for _, s := range svcs {
		var reqs, errs, rejected int
		var last string
		up := "-"
		if s.Stats != nil {
			up = time.Since(s.Stats.Started).Round(time.Second).String()
			for _, e := range s.Stats.Endpoints {
				reqs += e.NumRequests
				errs += e.NumErrors
				if e.LastError != "" {
					last = e.Name + ": " + e.LastError
				}
				var d struct {
					Rejected  int    `json:"rejected"`
					LastError string `json:"last_error"`
				}
				if json.Unmarshal(e.Data, &d) == nil {
					rejected += d.Rejected
					if d.LastError != "" {
						last = e.Name + ": " + d.LastError
					}
				}
			}
		}
		if len(last) > 80 {
			last = last[:77] + "..."
		}
		id := s.ID
		if len(id) > 8 {
			id = id[:8]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%v\t%d\t%d\t%d\t%s\n",
			strings.TrimPrefix(s.Name, "serket-"), s.Role(), id, s.Metadata[bus.MetaPID], s.Metadata[bus.MetaLatent],
			dash(s.Metadata[bus.MetaLikelihood]), dash(s.Metadata[bus.MetaBLAS]), up, s.RTT.Round(10*time.Microsecond), reqs, errs, rejected, dash(last))
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// streamCounts are a service's streaming counters: a module's posteriors
// (and sensor messages), the integrator's beliefs.
type streamCounts struct {
	posts, beliefs, bad, superseded, obs uint64
	lastPost                             int64
	lastBad                              string
}

func countsOf(s bus.Service) streamCounts {
	var c streamCounts
	if s.Stats == nil {
		return c
	}
	for _, e := range s.Stats.Endpoints {
		var d struct {
			Stream *struct {
				Observations, Posteriors, Superseded, Bad, Beliefs uint64
				LastBad                                            string            `json:"last_bad"`
				LastPostNs                                         int64             `json:"last_post_ns"`
				Rejected                                           map[string]uint64 `json:"rejected"`
				OutOfOrder                                         map[string]uint64 `json:"out_of_order"`
				Future                                             map[string]uint64 `json:"future"`
				LastError                                          string            `json:"last_error"`
			} `json:"stream"`
		}
		if json.Unmarshal(e.Data, &d) != nil || d.Stream == nil {
			continue
		}
		st := d.Stream
		c.obs, c.posts, c.superseded, c.bad, c.lastPost, c.lastBad = st.Observations, st.Posteriors, st.Superseded, st.Bad, st.LastPostNs, st.LastBad
		if s.Role() == "integrator" {
			c.beliefs = st.Beliefs
			for _, m := range []map[string]uint64{st.Rejected, st.OutOfOrder, st.Future} {
				for _, v := range m {
					c.bad += v
				}
			}
			c.lastBad = st.LastError
		}
	}
	return c
}

// printStreaming writes the streaming table: per module its sensor
// messages and posteriors per second, the age of its latest posterior and
// its bad sensor messages; for the integrator, beliefs per second and the
// streamed posteriors it refused.
func printStreaming(w io.Writer, svcs []bus.Service, before map[string]streamCounts, over time.Duration) {
	var rows []string
	for _, s := range svcs {
		now, then := countsOf(s), before[s.ID]
		name := strings.TrimPrefix(s.Name, "serket-")
		rate := func(a, b uint64) string { return fmt.Sprintf("%.1f/s", float64(a-min(a, b))/over.Seconds()) }
		switch {
		case s.Role() == "integrator" && (now.beliefs > 0 || now.bad > 0):
			rows = append(rows, fmt.Sprintf("%s\tbeliefs %s\t-\t-\t%d\t%s", name, rate(now.beliefs, then.beliefs), now.bad, dash(now.lastBad)))
		case now.obs > 0:
			age := "-"
			if now.lastPost > 0 {
				age = time.Since(time.Unix(0, now.lastPost)).Round(time.Millisecond).String()
			}
			rows = append(rows, fmt.Sprintf("%s\tposteriors %s\tsensor %s\t%s\t%d\t%s", name, rate(now.posts, then.posts), rate(now.obs, then.obs), age, now.bad, dash(now.lastBad)))
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\nstreaming (over %v):\n", over)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tOUT\tIN\tLAST POST\tBAD\tLAST BAD")
	for _, r := range rows {
		fmt.Fprintln(tw, r)
	}
	tw.Flush()
}
