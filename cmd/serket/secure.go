package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/launch"
)

// Identities besides the pipeline's processes that `serket up --secure`
// makes keys for: what clients, a robot's sensor drivers and a person at
// the console sign in with.
const (
	clientIdentity = "client" // inference only
	sensorIdentity = "sensor" // publishes on the pipeline's sensor subjects
	adminIdentity  = "admin"  // hears anything, publishes anything but training: serket ls, echo, record, replay
)

// secureLaunch has launchPipeline lock its embedded server: keys in keyDir
// (a temporary directory removed by cleanup when empty) and a permission
// set per process. It refuses an outside server, whose permissions serket
// cannot set (serket keys prints them for it).
func secureLaunch(g *globals, p *launch.Pipeline, keyDir string, o *launchOptions, log *slog.Logger) (cleanup func(), err error) {
	if g.natsURL != "" || p.NATS.URL != "" {
		return nil, usagef("--secure locks the embedded server; for a server of your own, include the block serket keys prints in its configuration (docs/security.md)")
	}
	cleanup = func() {}
	if keyDir == "" {
		dir, err := os.MkdirTemp("", "serket-keys-")
		if err != nil {
			return nil, err
		}
		keyDir, cleanup = dir, func() { os.RemoveAll(dir) }
	}
	if o.users, o.keys, err = pipelineKeys(p, keyDir); err != nil {
		cleanup()
		return nil, err
	}
	log.Info("secure: every process signs in with its own key; others are refused", "keys", keyDir,
		"client", o.keys[clientIdentity], "sensor", o.keys[sensorIdentity], "admin", o.keys[adminIdentity])
	return cleanup, nil
}

// pipelineKeys makes (or reuses) an nkey per process of p and per extra
// identity in dir, and returns the server's users and each name's seed
// file. A module may publish only its own subjects, only the integrator
// latents and expert gradients, clients may only call inference.
func pipelineKeys(p *launch.Pipeline, dir string) ([]bus.User, map[string]string, error) {
	subj, err := bus.NewSubjects(p.Name)
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("--secure: key directory: %w", err)
	}
	var sensors []string
	modules := p.Modules
	if p.Prior != nil { // a prior module is a module to the server: its own subjects, hearing only the integrator
		modules = append(slices.Clone(modules), *p.Prior)
	}
	for _, m := range modules {
		if slices.Contains([]string{clientIdentity, sensorIdentity, adminIdentity}, m.Name) {
			return nil, nil, usagef("--secure: a module may not be named %q (an identity serket up makes keys for)", m.Name)
		}
		sensors = append(sensors, m.Sensors...)
	}
	type identity struct {
		name    string
		role    bus.Role
		sensors []string
	}
	ids := []identity{{"integrator", bus.RoleIntegrator, nil}}
	for _, m := range modules {
		ids = append(ids, identity{m.Name, bus.RoleModule, m.Sensors})
	}
	ids = append(ids, identity{clientIdentity, bus.RoleClient, nil}, identity{sensorIdentity, bus.RoleSensor, sensors}, identity{adminIdentity, bus.RoleAdmin, nil})
	var users []bus.User
	files := map[string]string{}
	for _, id := range ids {
		k, err := bus.LoadOrCreateKey(filepath.Join(dir, id.name+".nk"))
		if err != nil {
			return nil, nil, fmt.Errorf("--secure: %w", err)
		}
		files[id.name] = k.Path
		users = append(users, bus.User{Name: id.name, NKey: k.Public, Permissions: subj.Permissions(id.role, id.name, id.sensors, bus.InboxPrefix(k.Public))})
	}
	return users, files, nil
}

func newKeysCmd(g *globals) *cobra.Command {
	var keyDir string
	cmd := &cobra.Command{
		Use:   "keys [pipeline.yaml] --key-dir DIR",
		Short: "make a pipeline's nkeys and print the nats-server authorization block that enforces its permissions",
		Long: `Make (or reuse) an nkey per process of the pipeline and for the client,
sensor and admin identities, as serket up --secure does, in --key-dir (seeds
0600), and print a nats-server configuration block that admits only those
keys with the permissions serket up --secure gives them. For a NATS server
or cluster of your own: include the block in its configuration, copy each
process's seed to the machine it runs on, and start the process with
NATS_NKEY (or --nkey) pointing at it. See docs/security.md.`,
		Args:        cobra.MaximumNArgs(1),
		Annotations: map[string]string{annFileArg: "yes"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if keyDir == "" {
				return usagef("give --key-dir: where the seeds are kept")
			}
			p, err := g.loadPipeline(cmd)
			if err != nil {
				return err
			}
			users, _, err := pipelineKeys(p, keyDir)
			if err != nil {
				return err
			}
			fmt.Printf("# serket pipeline %q: seeds in %s\n", p.Name, keyDir)
			return writeAuthorization(os.Stdout, users)
		},
	}
	cmd.Flags().StringVar(&keyDir, "key-dir", "", "where the nkey seeds are kept (made if missing, reused if present)")
	return cmd
}

// writeAuthorization writes users as a nats-server authorization block.
func writeAuthorization(w io.Writer, users []bus.User) error {
	list := func(s []string) string {
		q := make([]string, len(s))
		for i, v := range s {
			q[i] = strconv.Quote(v)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	var b strings.Builder
	b.WriteString("authorization {\n  users = [\n")
	for _, u := range users {
		fmt.Fprintf(&b, "    # %s\n    {nkey: %q, permissions: {", u.Name, u.NKey)
		switch {
		case len(u.Permissions.Publish) > 0 && len(u.Permissions.PublishDeny) > 0:
			fmt.Fprintf(&b, "publish: {allow: %s, deny: %s}", list(u.Permissions.Publish), list(u.Permissions.PublishDeny))
		case len(u.Permissions.Publish) > 0:
			fmt.Fprintf(&b, "publish: {allow: %s}", list(u.Permissions.Publish))
		default:
			b.WriteString(`publish: {deny: [">"]}`)
		}
		fmt.Fprintf(&b, ", subscribe: {allow: %s}", list(u.Permissions.Subscribe))
		if u.Permissions.Responses {
			b.WriteString(", allow_responses: {max: 1}")
		}
		b.WriteString("}}\n")
	}
	b.WriteString("  ]\n}\n")
	_, err := io.WriteString(w, b.String())
	return err
}
