package bus

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/serket-go/serket/procenv"
)

// ConnConfig configures a connection to NATS.
type ConnConfig struct {
	URL   string // "" means $NATS_URL, then nats://127.0.0.1:4222
	Name  string // client name shown by the server (e.g. "serket-vision")
	Creds string // a NATS credentials file (JWT + nkey seed), optional
	User  string // user and password, optional
	Pass  string
	Token string
	// NKeyFile is a file holding a user nkey seed (`serket up --secure`
	// writes one per process): Connect signs in with it and takes its
	// replies on the key's own inbox prefix (InboxPrefix), the only one a
	// secured server lets it hear. Empty means $NATS_NKEY when no other
	// credentials are given.
	NKeyFile string

	// TLS: a CA file to trust, and a client certificate and key for mutual
	// TLS; any of them set turns TLS on. TLSConfig, if set, is used as is.
	CAFile, CertFile, KeyFile string
	TLSConfig                 *tls.Config

	// Wait bounds how long Connect keeps retrying a first connection that
	// fails; 0 means 10 s. After that first connection, reconnection is
	// retried forever.
	Wait   time.Duration
	Logger *slog.Logger

	// Server, if set, is an embedded server to connect to in-process,
	// without TCP.
	Server *Server
}

// DefaultURL is where Connect looks when no URL is given and NATS_URL is unset.
const DefaultURL = "nats://127.0.0.1:4222"

// Connect connects to NATS with reconnection forever, a retried first
// connection (up to Wait), and disconnects and reconnects logged. It returns
// once connected or when Wait has passed.
func Connect(cfg ConnConfig) (*nats.Conn, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	url := cfg.URL
	if url == "" {
		url = os.Getenv(procenv.EnvNATSURL)
	}
	if url == "" {
		url = DefaultURL
	}
	wait := cfg.Wait
	if wait <= 0 {
		wait = 10 * time.Second
	}
	connected := make(chan struct{}, 1)
	var lastErr atomic.Pointer[error] // why the latest attempt failed
	opts := []nats.Option{
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) { lastErr.Store(&err) }),
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(true),
		nats.ConnectHandler(func(*nats.Conn) {
			select {
			case connected <- struct{}{}:
			default:
			}
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "url", url, "err", err)
			} else if !nc.IsClosed() {
				log.Warn("nats disconnected", "url", url)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Error("nats async error", "subject", subj, "err", err)
		}),
	}
	if cfg.Creds != "" {
		opts = append(opts, nats.UserCredentials(cfg.Creds))
	}
	if cfg.User != "" {
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Pass))
	}
	if cfg.Token != "" {
		opts = append(opts, nats.Token(cfg.Token))
	}
	if cfg.NKeyFile == "" && cfg.Creds == "" && cfg.User == "" && cfg.Token == "" {
		cfg.NKeyFile = os.Getenv(procenv.EnvNATSNKey)
	}
	if cfg.NKeyFile != "" {
		o, err := nkeyOptions(cfg.NKeyFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, o...)
	}
	if cfg.CAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.CAFile))
	}
	if cfg.CertFile != "" || cfg.KeyFile != "" {
		if cfg.CertFile == "" || cfg.KeyFile == "" {
			return nil, errors.New("bus: TLS client certificate needs both a cert file and a key file")
		}
		opts = append(opts, nats.ClientCert(cfg.CertFile, cfg.KeyFile))
	}
	if cfg.TLSConfig != nil {
		opts = append(opts, nats.Secure(cfg.TLSConfig))
	}
	if cfg.Server != nil {
		opts = append(opts, nats.InProcessServer(cfg.Server.Server))
		url = cfg.Server.ClientURL()
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("bus: connect to %s as %q: %w", url, cfg.Name, err)
	}
	if nc.IsConnected() {
		return nc, nil
	}
	select {
	case <-connected:
		return nc, nil
	case <-time.After(wait):
		last := nc.LastError()
		if p := lastErr.Load(); p != nil {
			last = *p
		}
		nc.Close()
		if last != nil && (errors.Is(last, nats.ErrAuthorization) || strings.Contains(strings.ToLower(last.Error()), "authorization")) {
			return nil, fmt.Errorf("bus: connect to %s as %q: the server refused our credentials (%v): give --nkey (or --creds, --user) of this pipeline", url, cfg.Name, last)
		}
		if last != nil {
			return nil, fmt.Errorf("bus: connect to %s as %q: no connection within %v: %w", url, cfg.Name, wait, last)
		}
		return nil, fmt.Errorf("bus: connect to %s as %q: no server answered within %v (is `serket up` running, or NATS_URL right?)", url, cfg.Name, wait)
	}
}

// nkeyOptions signs in with the user nkey seed in path and takes replies on
// its own inbox prefix.
func nkeyOptions(path string) ([]nats.Option, error) {
	seed, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bus: nkey: %w", err)
	}
	pub, err := publicKey(path, seed)
	if err != nil {
		return nil, err
	}
	sign := func(nonce []byte) ([]byte, error) {
		kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
		if err != nil {
			return nil, err
		}
		defer kp.Wipe()
		return kp.Sign(nonce)
	}
	return []nats.Option{nats.Nkey(pub, sign), nats.CustomInboxPrefix(InboxPrefix(pub))}, nil
}
