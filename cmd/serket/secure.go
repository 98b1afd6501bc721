package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/launch"
)

// Identities besides the pipeline's processes that `serket up --secure`
// makes keys for: what clients, a robot's sensor drivers and a person at
// the console sign in with.
const (
	clientIdentity = "client" // inference only
	sensorIdentity = "sensor" // publishes on the pipeline's sensor subjects
	adminIdentity  = "admin"  // anything: serket ls, echo, record, replay
)

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
	for _, m := range p.Modules {
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
	for _, m := range p.Modules {
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
