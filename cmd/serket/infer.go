package main

import (
	"context"
	"fmt"
	"io"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/client"
)

func newInferCmd(g *globals) *cobra.Command {
	var (
		from    []string
		to      []string
		n       int
		seed    int64
		out     string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "infer --from MODULE=INPUT [--from …] --to MODULE[,MODULE…]",
		Short: "fuse what some modules observe and decode it with others, on a running pipeline",
		Long: `Ask a running pipeline's integrator for an inference.

--from MODULE=TEXT gives a module typed input; --from MODULE=@FILE gives it a
file (its media type from the extension). --to lists the modules to decode.
Text outputs are printed; others are written to --out.`,
		Example: `  serket infer --from left="0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8" --to right,top --n 3`,
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			req, err := inferRequest(from, to, n, seed)
			if err != nil {
				return err
			}
			log := g.logger("infer")
			cc, err := g.clientConn("serket-infer", log)
			if err != nil {
				return err
			}
			cc.Wait = timeout
			nc, err := bus.Connect(cc)
			if err != nil {
				return err
			}
			defer nc.Close()
			c, err := client.New(nc, g.pipeline, "infer")
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			rep, err := c.Infer(ctx, req)
			if err != nil {
				return err
			}
			if err := printReply(os.Stdout, rep, out); err != nil {
				return err
			}
			return unanswered(req, rep)
		},
	}
	cmd.Flags().StringArrayVar(&from, "from", nil, "MODULE=TEXT or MODULE=@FILE (repeatable)")
	cmd.Flags().StringSliceVar(&to, "to", nil, "modules to decode (comma-separated or repeated)")
	cmd.Flags().IntVar(&n, "n", 0, "latent samples to decode (0: decode the fused mean once)")
	cmd.Flags().Int64Var(&seed, "seed", 1, "noise seed for the samples")
	cmd.Flags().StringVar(&out, "out", "out/infer", "directory for outputs that are not text")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for NATS and for the reply")
	return cmd
}

func inferRequest(from, to []string, n int, seed int64) (*bus.InferRequest, error) {
	obs, err := parseAssignments("from", from)
	if err != nil {
		return nil, err
	}
	req := &bus.InferRequest{Observations: map[string]bus.Payload{}, Want: to, Samples: n, Seed: seed}
	for name, v := range obs {
		p := bus.Payload{Type: "text/plain; charset=utf-8", Data: []byte(v)}
		if path, ok := strings.CutPrefix(v, "@"); ok {
			if p, err = client.ReadObservation(path); err != nil {
				return nil, usagef("--from %s=@%s: %v", name, path, err)
			}
		}
		req.Observations[name] = p
	}
	if err := client.CheckObservations(req.Observations); err != nil {
		return nil, usagef("--from: %v", err)
	}
	for _, name := range to {
		if !bus.ValidName(name) {
			return nil, usagef("--to %q is not a module name", name)
		}
	}
	if len(req.Observations) == 0 && len(to) == 0 {
		return nil, usagef("give at least one --from or --to")
	}
	return req, nil
}

func printReply(w io.Writer, rep *bus.InferReply, outDir string) error {
	fmt.Fprintf(w, "contributors: %s\n", orNone(rep.Contributors))
	if c := client.Concepts(rep); c != "" {
		fmt.Fprintln(w, c)
	}
	for _, name := range sortedKeys(rep.Missing) {
		fmt.Fprintf(w, "missing %s: %s\n", name, rep.Missing[name])
	}
	fmt.Fprintf(w, "latent mean: %s\n", floats(rep.Mu.Data))
	fmt.Fprintf(w, "latent log-variance: %s\n", floats(rep.LogVar.Data))
	for _, name := range sortedKeys(rep.Outputs) {
		for i, o := range rep.Outputs[name] {
			if strings.HasPrefix(o.Type, "text/") {
				fmt.Fprintf(w, "%s[%d]: %s\n", name, i, o.Data)
				continue
			}
			exts, _ := mime.ExtensionsByType(o.Type)
			ext := ".bin"
			if len(exts) > 0 {
				ext = exts[0]
			}
			if err := os.MkdirAll(outDir, 0o755); err != nil {
				return err
			}
			path := filepath.Join(outDir, fmt.Sprintf("%s-%d%s", name, i, ext))
			if err := os.WriteFile(path, o.Data, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(w, "%s[%d]: %s (%d bytes) → %s\n", name, i, o.Type, len(o.Data), path)
		}
	}
	return nil
}

// unanswered is client.Unanswered in the flags' words.
func unanswered(req *bus.InferRequest, rep *bus.InferReply) error {
	return client.Unanswered(req, rep, func(from bool, name string) string {
		if from {
			return "--from " + name
		}
		return "--to " + name
	})
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "(none: the latent is the prior)"
	}
	return strings.Join(s, ", ")
}

func floats(v []float32) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, x := range v {
		if i > 0 {
			b.WriteByte(' ')
		}
		if i == 8 && len(v) > 10 {
			fmt.Fprintf(&b, "… (%d more)", len(v)-8)
			break
		}
		fmt.Fprintf(&b, "%.3f", x)
	}
	b.WriteByte(']')
	return b.String()
}
