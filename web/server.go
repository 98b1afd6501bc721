package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

//go:embed assets
var assets embed.FS

// csp keeps the page to its own assets: no inline script, nothing from
// elsewhere; renderings arrive as data: URLs or from /api/.
const csp = "default-src 'self'; img-src 'self' data: blob:; media-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'"

// tokenCookie carries the token once the page was opened with ?token=.
const tokenCookie = "serket_token"

// Server serves the page and its API for one Hub.
type Server struct {
	hub   *Hub
	token string
	hosts []string // the Host headers accepted ("": any)
	mux   *http.ServeMux
	log   *slog.Logger
}

// ServerConfig configures a Server.
type ServerConfig struct {
	// Token, if set, must come with every request: as ?token= on the
	// page's URL (the page then keeps it in a cookie) or as a bearer
	// token. serket prints the URL with it at start.
	Token string
	// Hosts, if set, are the only Host headers served: a page bound to
	// localhost refuses a request whose Host is some other name, which is
	// what a DNS-rebinding attack from another site's page would send.
	Hosts []string
	// AskTimeout bounds an inference asked from the page (default 20 s).
	AskTimeout time.Duration
	Logger     *slog.Logger
}

// NewServer returns the view's HTTP handler for hub.
func NewServer(hub *Hub, cfg ServerConfig) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.AskTimeout <= 0 {
		cfg.AskTimeout = 20 * time.Second
	}
	s := &Server{hub: hub, token: cfg.Token, hosts: cfg.Hosts, mux: http.NewServeMux(), log: cfg.Logger}
	static, _ := fs.Sub(assets, "assets")
	files := http.FileServerFS(static)
	s.mux.Handle("GET /{$}", files)
	s.mux.Handle("GET /app.js", files)
	s.mux.Handle("GET /style.css", files)
	s.mux.HandleFunc("GET /api/events", s.events)
	s.mux.HandleFunc("GET /api/said/{module}", s.said)
	s.mux.Handle("POST /api/ask", &asker{hub: hub, timeout: cfg.AskTimeout, busy: make(chan struct{}, asksAtOnce)})
	return s
}

// ServeHTTP checks the host, the origin of a POST and the token, sets the
// headers that keep the page to itself, and serves the request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	if len(s.hosts) > 0 && !hostAllowed(r.Host, s.hosts) {
		http.Error(w, fmt.Sprintf("this view answers to %s, not to host %q", strings.Join(s.hosts, ", "), r.Host), http.StatusMisdirectedRequest)
		return
	}
	if r.Method == http.MethodPost && !sameOrigin(r) {
		http.Error(w, "a request from another site's page is refused", http.StatusForbidden)
		return
	}
	if s.token != "" && !s.authorised(w, r) {
		return
	}
	s.mux.ServeHTTP(w, r)
}

// authorised reports whether r carries the token. Opening the page with
// ?token= sets the cookie and redirects to the page without the token, so
// that it stays out of the address bar, the history and any link copied
// from it. A request without it gets a 401 that says where the token is.
func (s *Server) authorised(w http.ResponseWriter, r *http.Request) bool {
	if c, err := r.Cookie(tokenCookie); err == nil && s.tokenIs(c.Value) {
		return true
	}
	if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && s.tokenIs(v) {
		return true
	}
	if q := r.URL.Query(); q.Has("token") && s.tokenIs(q.Get("token")) {
		http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: s.token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		if r.Method == http.MethodGet && r.URL.Path == "/" {
			q.Del("token")
			u := url.URL{Path: "/", RawQuery: q.Encode()}
			http.Redirect(w, r, u.String(), http.StatusSeeOther)
			return false
		}
		return true
	}
	http.Error(w, "this view needs its token: open the URL serket printed when it started (it ends in ?token=…)", http.StatusUnauthorized)
	return false
}

func (s *Server) tokenIs(v string) bool {
	return subtle.ConstantTimeCompare([]byte(v), []byte(s.token)) == 1
}

func hostAllowed(host string, hosts []string) bool {
	for _, h := range hosts {
		if strings.EqualFold(host, h) {
			return true
		}
	}
	return false
}

// sameOrigin reports whether a POST comes from the view's own page: a
// browser sends Origin with every cross-site POST, and a form on another
// site's page must not make this one infer (or, with the cookie, act as
// its user). A request with no Origin is not from a browser's page.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// NewToken returns a random token for ServerConfig.Token.
func NewToken() string { return rand.Text() }

// Listen opens addr for the view. With local, an address without a host
// (":8080") binds to 127.0.0.1 rather than every interface. It returns the
// listener, the URL to open, and the Host headers to accept (nil unless
// bound to a loopback address).
func Listen(addr string, local bool) (net.Listener, string, []string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, "", nil, fmt.Errorf("web: %q is not host:port (for example localhost:8080 or :8080): %w", addr, err)
	}
	if host == "" && local {
		host = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, "", nil, fmt.Errorf("web: %w (choose another address with --web)", err)
	}
	_, port, _ = net.SplitHostPort(ln.Addr().String())
	shown := host
	if shown == "" || shown == "0.0.0.0" || shown == "::" {
		shown = "localhost"
	}
	var hosts []string
	if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || host == "localhost" {
		for _, h := range []string{"localhost", "127.0.0.1", "[::1]"} {
			hosts = append(hosts, h+":"+port)
		}
		shown = host
	}
	return ln, "http://" + net.JoinHostPort(strings.Trim(shown, "[]"), port) + "/", hosts, nil
}

// Serve serves s on ln until ctx is done, then closes every connection,
// the open event streams with them.
func Serve(ctx context.Context, ln net.Listener, s *Server) error {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
		}
		srv.Close()
	}()
	err := srv.Serve(ln)
	close(done)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
