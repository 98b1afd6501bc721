package web

import (
	"net/http"
	"time"
)

// page is one connected event stream. Its queue is bounded: a page that
// cannot keep up is dropped (its browser reconnects and gets a fresh
// snapshot) rather than let events pile up in the Hub.
type page struct {
	events chan event
	gone   chan struct{} // closed when the Hub drops the page
}

// pageQueue is how many events a page may have waiting.
const pageQueue = 256

// join adds a page and queues the snapshot it starts from. The first
// page starts the watcher (discovery, posteriors for the projection).
func (h *Hub) join() *page {
	p := &page{events: make(chan event, pageQueue), gone: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pages[p] = struct{}{}
	for _, e := range h.snapshotLocked(time.Now()) {
		p.events <- e
	}
	if h.watch == nil {
		h.watch = startWatcher(h)
	}
	return p
}

// leave removes a page; when the last one goes, so does the watcher, so
// that a view nobody looks at costs the pipeline nothing but its few
// always-on subscriptions.
func (h *Hub) leave(p *page) {
	h.mu.Lock()
	h.dropLocked(p)
	w := h.watch
	if len(h.pages) == 0 {
		h.watch = nil
	} else {
		w = nil
	}
	h.mu.Unlock()
	if w != nil {
		w.stop()
	}
}

func (h *Hub) dropLocked(p *page) {
	if _, ok := h.pages[p]; ok {
		delete(h.pages, p)
		close(p.gone)
	}
}

func (h *Hub) broadcastLocked(evs []event) {
	for p := range h.pages {
		for _, e := range evs {
			select {
			case p.events <- e:
				continue
			default:
			}
			h.log.Warn("web: a page fell behind its events and was dropped; it reconnects with a fresh snapshot")
			h.dropLocked(p)
			break
		}
	}
}

// heartbeat keeps an idle event stream from being closed by a proxy, and
// finds out soon that a browser went away.
const heartbeat = 15 * time.Second

// events streams Server-Sent Events to one page until it goes away.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	p := s.hub.join()
	defer s.hub.leave(p)
	if _, err := w.Write([]byte("retry: 1000\n\n")); err != nil {
		return
	}
	beat := time.NewTicker(heartbeat)
	defer beat.Stop()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case <-p.gone:
			return
		case e := <-p.events:
			_, err = w.Write(e)
			// Write what is queued with it in the same flush.
			for n := len(p.events); n > 0 && err == nil; n-- {
				_, err = w.Write(<-p.events)
			}
		case <-beat.C:
			_, err = w.Write([]byte(": beat\n\n"))
		}
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			return
		}
	}
}
