package bus

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nkeys"
)

// Role is what a process may do on a pipeline's subjects when the server
// enforces permissions (`serket up --secure`).
type Role int

const (
	// RoleModule publishes its own posteriors, decoder gradients, streamed
	// posteriors and sayings, answers its encode, decode and status
	// requests, and hears steps, latents, its own expert gradients,
	// beliefs and its sensors.
	RoleModule Role = iota
	// RoleIntegrator announces steps, broadcasts latents, expert gradients
	// and beliefs, reports its training's progress, asks modules to encode
	// and decode, and answers inference; it hears every module's
	// posteriors and gradients.
	RoleIntegrator
	// RoleClient may only call inference.
	RoleClient
	// RoleSensor publishes on the pipeline's sensor subjects and hears
	// beliefs and what modules say of them (a robot's drivers).
	RoleSensor
	// RoleAdmin hears everything and may publish anything but training
	// messages (serket ls, echo, record, replay): nobody but the
	// integrator drives training or reports its progress, and no
	// module's posteriors or gradients are forged in its name.
	RoleAdmin
)

func (r Role) String() string {
	switch r {
	case RoleModule:
		return "module"
	case RoleIntegrator:
		return "integrator"
	case RoleClient:
		return "client"
	case RoleSensor:
		return "sensor"
	case RoleAdmin:
		return "admin"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// Permissions are the subjects a process may publish and subscribe to,
// and those of the allowed ones it may not publish to (PublishDeny wins
// over Publish). Responses lets it answer requests it received (one reply
// each) without a publish permission on the requester's inbox.
type Permissions struct {
	Publish, Subscribe []string
	PublishDeny        []string
	Responses          bool
}

// Permissions returns what a process of role may do on this pipeline.
// module names the module (RoleModule); sensors are the subjects the module
// streams from (RoleModule) or all the pipeline's sensor subjects
// (RoleSensor); inbox is the process's reply-inbox prefix (InboxPrefix of
// its public key), the only inbox it may hear, so that no one reads
// another's replies.
func (s Subjects) Permissions(role Role, module string, sensors []string, inbox string) Permissions {
	p := s.prefix
	in := inbox + ".>"
	switch role {
	case RoleModule:
		return Permissions{
			Publish: []string{s.Post(module), s.ZGrad(module), s.ObsPost(module), s.Said(module)},
			Subscribe: append([]string{s.Step(), s.Latent(), s.EGrad(module), s.Control(module), s.Encode(module), s.Decode(module), s.Prior(module), s.PriorTrain(module),
				s.Features(module), s.Score(module), s.TrainStatus(module), s.Belief(), "$SRV.>", in}, sensors...),
			Responses: true,
		}
	case RoleIntegrator:
		return Permissions{
			Publish: []string{s.Step(), s.Latent(), p + ".egrad.*", p + ".train.ctl.*", s.TrainProgress(), s.Belief(), p + ".encode.*", p + ".decode.*",
				p + ".train.status.*", p + ".prior.*", p + ".train.prior.*", "$SRV.>"},
			Subscribe: []string{p + ".post.*", p + ".zgrad.*", p + ".obs.post.*", s.Infer(), "$SRV.>", in},
			Responses: true,
		}
	case RoleClient:
		return Permissions{Publish: []string{s.Infer()}, Subscribe: []string{in}}
	case RoleSensor:
		return Permissions{Publish: sensors, Subscribe: []string{s.Belief(), p + ".said.*", in}}
	case RoleAdmin:
		return Permissions{Publish: []string{">"}, Subscribe: []string{">"}, Responses: true, PublishDeny: s.training()}
	}
	panic(fmt.Sprintf("bus: Permissions of %v", role))
}

// training are the subjects of training messages: only the integrator
// and each module for itself may publish them. The integrator's progress
// reports are among them, so that no one forges a run's curves.
func (s Subjects) training() []string {
	p := s.prefix
	return []string{s.Step(), s.Latent(), p + ".egrad.*", p + ".train.ctl.*", p + ".train.prior.*", s.TrainProgress(), p + ".post.*", p + ".zgrad.*"}
}

// InboxPrefix is the reply-inbox prefix of the NATS user with the public
// nkey pub: Connect uses it when it signs in with that key, and the server
// lets that user alone subscribe to it.
func InboxPrefix(pub string) string {
	if len(pub) > 20 {
		pub = pub[:20]
	}
	return "_INBOX_" + pub
}

// User is one identity of a secured pipeline: a name for logs, the public
// nkey it signs in with, and its permissions.
type User struct {
	Name        string
	NKey        string // public user nkey ("U…")
	Permissions Permissions
}

// KeyFile is an nkey seed stored in a file only its owner may read.
type KeyFile struct {
	Path   string
	Public string
}

// LoadOrCreateKey returns the user nkey whose seed is at path, creating a
// new one (mode 0600) when the file does not exist. A file that exists but
// is not a user seed, or that others may read, is an error naming it.
func LoadOrCreateKey(path string) (KeyFile, error) {
	seed, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		kp, err := nkeys.CreateUser()
		if err != nil {
			return KeyFile{}, fmt.Errorf("bus: new nkey for %s: %w", path, err)
		}
		seed, _ := kp.Seed()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return KeyFile{}, fmt.Errorf("bus: key directory: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return KeyFile{}, fmt.Errorf("bus: write nkey seed: %w", err)
		}
		_, werr := f.Write(append(seed, '\n'))
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			os.Remove(path)
			return KeyFile{}, fmt.Errorf("bus: write nkey seed %s: %w", path, werr)
		}
		pub, _ := kp.PublicKey()
		return KeyFile{Path: path, Public: pub}, nil
	}
	if err != nil {
		return KeyFile{}, fmt.Errorf("bus: read nkey seed: %w", err)
	}
	pub, err := publicKey(path, seed)
	if err != nil {
		return KeyFile{}, err
	}
	return KeyFile{Path: path, Public: pub}, nil
}

// publicKey checks a seed file's content and mode and returns its public key.
func publicKey(path string, seed []byte) (string, error) {
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("bus: nkey seed %s is readable by others (mode %v): chmod 600 it", path, fi.Mode().Perm())
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
	if err != nil {
		return "", fmt.Errorf("bus: %s is not an nkey seed: %w", path, err)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return "", fmt.Errorf("bus: %s is not a user nkey seed (want one starting with SU)", path)
	}
	return pub, nil
}
