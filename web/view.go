package web

import (
	"context"
	"log/slog"
	"sync"
)

// Config configures a live view: where it listens and what it follows.
type Config struct {
	// Addr is host:port. With Secure, an address without a host binds to
	// 127.0.0.1, and the page requires a token (Token, or a fresh one).
	Addr   string
	Secure bool
	Token  string
	Hub    HubConfig
	Logger *slog.Logger
}

// View is a running live view: a Hub and the page's server.
type View struct {
	// URL is what to open in a browser, with the token if there is one.
	URL string
	Hub *Hub

	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// Start starts following the pipeline and serving its page until ctx is
// done or Close.
func Start(ctx context.Context, cfg Config) (*View, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Hub.Logger == nil {
		cfg.Hub.Logger = cfg.Logger
	}
	ln, url, hosts, err := Listen(cfg.Addr, cfg.Secure)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	hub, err := NewHub(ctx, cfg.Hub)
	if err != nil {
		cancel()
		ln.Close()
		return nil, err
	}
	if cfg.Secure && cfg.Token == "" {
		cfg.Token = NewToken()
	}
	if cfg.Token != "" {
		url += "?token=" + cfg.Token
	}
	srv := NewServer(hub, ServerConfig{Token: cfg.Token, Hosts: hosts, Logger: cfg.Logger})
	v := &View{URL: url, Hub: hub, cancel: cancel, done: make(chan error, 1)}
	go func() {
		err := Serve(ctx, ln, srv)
		hub.Close()
		v.done <- err
	}()
	return v, nil
}

// Close stops the view: its server, every page's stream and the Hub's
// subscriptions. It may be called more than once.
func (v *View) Close() error {
	v.once.Do(func() {
		v.cancel()
		v.err = <-v.done
	})
	return v.err
}
