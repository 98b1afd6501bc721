// Command serket runs and inspects serket pipelines: `serket up` starts one
// (an embedded NATS server, the integrator and every module as separate
// processes), `serket module` and `serket integrator` are those processes,
// and `serket ls`, `serket echo` and `serket infer` look at a running one.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/launch"
	"github.com/serket-go/serket/procenv"
)

// globals are the flags every command shares.
type globals struct {
	natsURL  string
	pipeline string
	creds    string
	user     string
	password string
	tlsCA    string
	tlsCert  string
	tlsKey   string
	nkey     string
	logLevel string
	filePath string           // -f, or up's and train's argument
	file     *launch.Pipeline // the file, loaded before the command runs; nil: none
}

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "serket:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "serket",
		Short: "multimodal generative models as processes that talk over NATS",
		Long: `serket runs multimodal generative models as processes that talk over NATS:
a module per modality, an integrator that fuses their posteriors.

` + precedenceHelp,
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: g.bindFile,
	}
	f := root.PersistentFlags()
	f.StringVarP(&g.filePath, "file", "f", "", "the pipeline file: its name, server, modules, data and checkpoints (see serket --help)")
	f.StringVar(&g.natsURL, "nats", os.Getenv(procenv.EnvNATSURL), "NATS server URL (default $"+procenv.EnvNATSURL+", else nats://127.0.0.1:4222)")
	f.StringVar(&g.pipeline, "pipeline", envOr(procenv.EnvPipeline, bus.DefaultPipeline), "pipeline name (subject namespace)")
	f.StringVar(&g.creds, "creds", os.Getenv(procenv.EnvNATSCreds), "NATS credentials file")
	f.StringVar(&g.user, "user", os.Getenv(procenv.EnvNATSUser), "NATS user")
	f.StringVar(&g.password, "password", os.Getenv(procenv.EnvNATSPassword), "NATS password")
	f.StringVar(&g.tlsCA, "tls-ca", os.Getenv(procenv.EnvNATSCA), "CA certificate to trust for TLS (default $"+procenv.EnvNATSCA+")")
	f.StringVar(&g.tlsCert, "tls-cert", os.Getenv(procenv.EnvNATSCert), "client certificate for mutual TLS (default $"+procenv.EnvNATSCert+")")
	f.StringVar(&g.tlsKey, "tls-key", os.Getenv(procenv.EnvNATSKey), "client key for mutual TLS (default $"+procenv.EnvNATSKey+")")
	f.StringVar(&g.nkey, "nkey", os.Getenv(procenv.EnvNATSNKey), "file with an nkey seed to sign in with (serket up --secure writes them; default $"+procenv.EnvNATSNKey+")")
	f.StringVar(&g.logLevel, "log-level", envOr(procenv.EnvLogLevel, "info"), "log level: debug, info, warn or error")
	root.AddCommand(
		newUpCmd(g),
		newModuleCmd(g),
		newIntegratorCmd(g),
		newLsCmd(g),
		newEchoCmd(g),
		newInferCmd(g),
		newDemoCmd(g),
		newDataCmd(g),
		newTrainCmd(g),
		newBenchCmd(g),
		newGenerateCmd(g),
		newEvalCmd(g),
		newConceptsCmd(g),
		newRecordCmd(g), newReplayCmd(g),
		newKeysCmd(g),
		newViewCmd(g),
	)
	return root
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// logger is the process's one logger, tagged with its name.
func (g *globals) logger(name string) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	h := slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})
	l := slog.New(h).With("module", name)
	slog.SetDefault(l)
	return l
}

func (g *globals) conn(name string, log *slog.Logger) bus.ConnConfig {
	return bus.ConnConfig{
		URL: g.natsURL, Name: name, Creds: g.creds, User: g.user, Pass: g.password,
		CAFile: g.tlsCA, CertFile: g.tlsCert, KeyFile: g.tlsKey, NKeyFile: g.nkey, Logger: log,
	}
}

// signalContext is cancelled by SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// errUsage marks an error in what the user typed.
var errUsage = errors.New("usage")

func usagef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

// parseAssignments turns ["a=x", "b=y"] into a map, refusing bad names.
func parseAssignments(flag string, items []string) (map[string]string, error) {
	out := map[string]string{}
	for _, it := range items {
		name, value, ok := strings.Cut(it, "=")
		if !ok || !bus.ValidName(name) {
			return nil, usagef("--%s %q: want MODULE=VALUE with a module name such as vision", flag, it)
		}
		if _, dup := out[name]; dup {
			return nil, usagef("--%s names %s twice", flag, name)
		}
		out[name] = value
	}
	return out, nil
}

func busConnect(g *globals, url string, log *slog.Logger) (*nats.Conn, error) {
	cc := g.conn("serket-cli", log)
	cc.URL = url
	return bus.Connect(cc)
}
