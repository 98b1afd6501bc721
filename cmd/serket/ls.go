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
		asJSON  bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "list the live services of a pipeline with health and stats",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			log := g.logger("ls")
			cc := g.conn("serket-ls", log)
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
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(svcs)
			}
			if len(svcs) == 0 {
				return fmt.Errorf("no serket services of pipeline %q answered within %v on %s", g.pipeline, window, nc.ConnectedUrlRedacted())
			}
			printServices(os.Stdout, svcs)
			return nil
		},
	}
	cmd.Flags().DurationVar(&window, "window", 300*time.Millisecond, "how long to wait for services to answer")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long to keep trying to reach NATS")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the full INFO and STATS as JSON")
	return cmd
}

// printServices writes one row per service instance: who it is, how it
// answered (round trip of the discovery request), and its endpoints'
// counts of requests, errors and rejected messages.
func printServices(w io.Writer, svcs []bus.Service) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tID\tPID\tLATENT\tLIKELIHOOD\tUP\tRTT\tREQUESTS\tERRORS\tREJECTED\tLAST ERROR")
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%v\t%d\t%d\t%d\t%s\n",
			strings.TrimPrefix(s.Name, "serket-"), s.Role(), id, s.Metadata[bus.MetaPID], s.Metadata[bus.MetaLatent],
			dash(s.Metadata[bus.MetaLikelihood]), up, s.RTT.Round(10*time.Microsecond), reqs, errs, rejected, dash(last))
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
