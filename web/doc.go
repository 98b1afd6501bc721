// Package web is serket's live view: a page, served by the serket binary
// itself with every asset embedded, that shows a running pipeline as it
// works: its processes as a graph with their health, rates and restarts;
// the training run's curves; the streaming beliefs and what each module
// renders of them; a 2-D projection of recent posteriors; and a form that
// asks the pipeline for an inference as `serket infer` does.
//
// The view is a NATS client like `serket ls` and `serket echo`, and no more:
// a Hub subscribes to what the pipeline publishes (training progress,
// beliefs, what modules say), polls discovery for health, and keeps what a
// page needs; a Server turns that into Server-Sent Events. Under --secure
// it signs in with the admin key, so it never has a permission the keys do
// not already define.
//
// Why Server-Sent Events: the page only listens (its one request, an
// inference, is a plain POST), and SSE is one-way HTTP that the browser
// reconnects by itself, with no dependency on either side. A WebSocket
// would add a protocol and a library for a direction nobody uses. Making
// the browser a NATS client (the server's WebSocket listener) would put
// the bus's trust boundary in the browser: it would need a key, would see
// every message raw, and would have to decode msgpack tensors itself. Here
// the browser sees only what the Hub has checked, rate-limited for it.
//
// Everything on the bus may be forged, garbage or NaN: the Hub decodes
// with the bus's checks, refuses a rendering published under another
// module's name, counts and logs (rate-limited) what it refuses, and the
// page builds its DOM from text, never from markup. Renderings are shown
// only for media types a browser displays safely (PNG, JPEG, GIF, WAV,
// text); anything else is shown as its size and type.
//
// Costs: with no page open, the Hub only keeps the training curve and the
// latest belief (a few small messages a second). Discovery polling, the
// streamed posteriors for the projection and a sample of training
// posteriors (one message per module every few seconds) run only while a
// page is connected, and stop when the last one goes.
package web
