package bus

import (
	"crypto/tls"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// ServerConfig configures an embedded nats-server.
type ServerConfig struct {
	Host      string // default 127.0.0.1
	Port      int    // 0 means a random free port; DefaultPort is what `serket up` uses
	JetStream bool
	StoreDir  string        // JetStream store; "" with JetStream on means a new temp dir, removed on Shutdown
	Ready     time.Duration // how long to wait for the server to accept clients; default 10s
	Debug     bool          // let the server log to stderr

	// Users, when set, are the only identities the server admits, each
	// signing in with its nkey and held to its permissions; a client
	// without a key is refused. Empty: anyone may connect and do anything.
	Users []User
	// TLS, when set, makes the server require TLS (a certificate the
	// clients trust); with ClientCAs and RequireAndVerifyClientCert it
	// also verifies client certificates.
	TLS *tls.Config
}

// DefaultPort is NATS's well-known client port.
const DefaultPort = 4222

// nats-server refuses to start with a max_payload above its max_pending,
// the bytes it buffers for one client (default server.MAX_PENDING_SIZE):
// this constant, negative if DefaultMaxBytes were larger, would not compile.
const _ = uint(server.MAX_PENDING_SIZE - DefaultMaxBytes)

// Server is a nats-server running inside this process.
type Server struct {
	*server.Server
	tempDir string
}

// StartServer starts an embedded nats-server and waits until it accepts
// clients. The caller must Shutdown it.
func StartServer(cfg ServerConfig) (*Server, error) {
	opts := &server.Options{
		Host:   cfg.Host,
		Port:   cfg.Port,
		NoLog:  !cfg.Debug,
		NoSigs: true,
		// Serket's largest message, a photo or a WAV in an inference
		// request, not nats-server's default of 1 MB.
		MaxPayload: DefaultMaxBytes,
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Port == 0 {
		opts.Port = server.RANDOM_PORT
	}
	for _, u := range cfg.Users {
		if !nkeys.IsValidPublicUserKey(u.NKey) {
			return nil, fmt.Errorf("bus: user %q: %q is not a public user nkey", u.Name, u.NKey)
		}
		perm := &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: u.Permissions.Publish},
			Subscribe: &server.SubjectPermission{Allow: u.Permissions.Subscribe},
		}
		perm.Publish.Deny = u.Permissions.PublishDeny
		if len(perm.Publish.Allow) == 0 {
			perm.Publish.Deny = []string{">"}
		}
		if u.Permissions.Responses {
			perm.Response = &server.ResponsePermission{MaxMsgs: 1}
		}
		opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: u.NKey, Permissions: perm})
	}
	if cfg.TLS != nil {
		opts.TLSConfig, opts.TLS = cfg.TLS, true
		opts.TLSVerify = cfg.TLS.ClientAuth == tls.RequireAndVerifyClientCert
		opts.TLSTimeout = 2
	}
	s := &Server{}
	if cfg.JetStream {
		opts.JetStream = true
		opts.StoreDir = cfg.StoreDir
		if opts.StoreDir == "" {
			dir, err := os.MkdirTemp("", "serket-jetstream-")
			if err != nil {
				return nil, fmt.Errorf("bus: jetstream store: %w", err)
			}
			opts.StoreDir, s.tempDir = dir, dir
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		s.cleanup()
		return nil, fmt.Errorf("bus: embedded nats-server on %s:%d: %w", opts.Host, cfg.Port, err)
	}
	if cfg.Debug {
		ns.ConfigureLogger()
	}
	s.Server = ns
	go ns.Start()
	ready := cfg.Ready
	if ready <= 0 {
		ready = 10 * time.Second
	}
	if !ns.ReadyForConnections(ready) {
		ns.Shutdown()
		s.cleanup()
		return nil, fmt.Errorf("bus: embedded nats-server on %s:%d not ready after %v (is the port in use?)", opts.Host, cfg.Port, ready)
	}
	return s, nil
}

// Shutdown stops the server, waits for it, and removes a temporary store.
func (s *Server) Shutdown() {
	s.Server.Shutdown()
	s.Server.WaitForShutdown()
	s.cleanup()
}

func (s *Server) cleanup() {
	if s.tempDir != "" {
		os.RemoveAll(s.tempDir)
	}
}
