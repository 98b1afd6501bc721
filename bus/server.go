package bus

import (
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ServerConfig configures an embedded nats-server.
type ServerConfig struct {
	Host      string // default 127.0.0.1
	Port      int    // 0 means a random free port; DefaultPort is what `serket up` uses
	JetStream bool
	StoreDir  string        // JetStream store; "" with JetStream on means a new temp dir, removed on Shutdown
	Ready     time.Duration // how long to wait for the server to accept clients; default 10s
	Debug     bool          // let the server log to stderr
}

// DefaultPort is NATS's well-known client port.
const DefaultPort = 4222

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
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Port == 0 {
		opts.Port = server.RANDOM_PORT
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
