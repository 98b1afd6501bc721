package foreign

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/module"
)

var (
	// errShape marks a reply whose arrays are not of the length the call
	// implies: the child is broken, and fails.
	errShape = errors.New("a reply of the wrong shape")
	// errNotFinite marks a reply with a NaN or infinite float where a
	// finite one is due: the call fails, the child serves on (a diverged
	// model is not a broken program).
	errNotFinite = errors.New("a reply that is not finite")
)

// maxFeatureLen bounds the feature length a child may declare.
const maxFeatureLen = 1 << 24

// Module is a modality served by a child program. It implements
// module.Modality and every optional interface, and is module.Partial:
// Serves says which the child declared in its handshake. Like any
// modality its methods are called from one goroutine at a time; Close,
// Done and Err from any.
type Module struct {
	c          *child
	spec       module.Spec
	caps       map[module.Capability]bool
	featureLen int

	seq    uint64
	buf    []byte // the request frame
	timing map[string]*Timing

	freeMu sync.Mutex
	free   []uint64 // handles of batches garbage-collected since the last call
}

var (
	_ module.Partial      = (*Module)(nil)
	_ module.Learner      = (*Module)(nil)
	_ module.Loader       = (*Module)(nil)
	_ module.Scorer       = (*Module)(nil)
	_ module.Featurer     = (*Module)(nil)
	_ module.Parser       = (*Module)(nil)
	_ module.Renderer     = (*Module)(nil)
	_ module.MultiDecoder = (*Module)(nil)
	_ module.Saver        = (*Module)(nil)
	_ module.Picker       = pickable{}
)

// Start runs the child and shakes hands with it: its spec must be the one
// cfg.Hello asks for and valid. The Module runs until Close, or until the
// child fails (Done).
func Start(cfg Config) (*Module, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	c, err := start(cfg)
	if err != nil {
		return nil, err
	}
	m := &Module{c: c}
	if err := m.hello(cfg.Hello); err != nil {
		c.fail(err)
		c.close()
		return nil, c.failure()
	}
	return m, nil
}

// hello is the handshake (docs/foreign.md, "hello").
func (m *Module) hello(h Hello) error {
	h.MaxFrame = m.c.cfg.MaxFrame
	req := helloReq{Protocol: Protocol, Config: h}
	rep, err := m.call(&req.head, &req, "hello")
	if err != nil {
		return err
	}
	if rep.Protocol != Protocol {
		return fmt.Errorf("it speaks protocol %d, serket %d", rep.Protocol, Protocol)
	}
	s := rep.Spec
	m.spec = module.Spec{Name: s.Name, Latent: s.Latent, Likelihood: s.Likelihood, Private: s.Private}
	switch {
	case s.Name != h.Name:
		return fmt.Errorf("its spec names it %q, the pipeline %q", s.Name, h.Name)
	case s.Latent != h.Latent:
		return fmt.Errorf("its latent has %d dimensions, the pipeline's %d", s.Latent, h.Latent)
	case s.Private != h.Private:
		return fmt.Errorf("its private latent has %d dimensions, %d were asked for (--private)", s.Private, h.Private)
	}
	if err := m.spec.Validate(); err != nil {
		return err
	}
	m.caps = map[module.Capability]bool{}
	for _, c := range rep.Capabilities {
		if !slices.Contains(module.Capabilities, module.Capability(c)) && c != "pick" {
			return fmt.Errorf("it declares capability %q; the protocol has %v and pick", c, module.Capabilities)
		}
		m.caps[module.Capability(c)] = true
	}
	if m.caps[module.CanFeatures] && (rep.FeatureLen < 1 || rep.FeatureLen > maxFeatureLen) {
		return fmt.Errorf("it declares features of length %d: want 1 to %d", rep.FeatureLen, maxFeatureLen)
	}
	m.featureLen = rep.FeatureLen
	return nil
}

// call sends one request (h is its head) and returns the reply; an error
// reply is the call's error, naming the module.
func (m *Module) call(h *head, req any, op string) (*reply, error) {
	m.seq++
	h.Op, h.Seq, h.Free = op, m.seq, m.takeFree()
	start := time.Now()
	rep, buf, err := m.c.roundTrip(req, m.seq, op, m.buf)
	m.buf = buf
	if err != nil {
		return nil, err
	}
	m.time(op, time.Since(start), time.Duration(rep.ComputeNS))
	if rep.Error != nil {
		return nil, fmt.Errorf("%s: %s: %s", m.c.who, op, *rep.Error)
	}
	return rep, nil
}

// broken fails the child for a reply that breaks the protocol, and
// returns the error every call gives from now on; a reply that is only
// not finite fails the call alone.
func (m *Module) broken(op string, err error) error {
	if errors.Is(err, errNotFinite) {
		return fmt.Errorf("%s: %s: %w", m.c.who, op, err)
	}
	m.c.fail(fmt.Errorf("its %s reply: %w", op, err))
	return m.c.failure()
}

// Timing is what the calls of one kind cost: how many, their round trips
// from request to reply (encoding, the pipes, the program), and of that
// the time the program says it spent in its own code.
type Timing struct {
	Calls     int
	RoundTrip time.Duration
	Compute   time.Duration
}

// Overhead is the round trips' time outside the program's own code: the
// protocol's cost (0 if the program does not report compute_ns).
func (t Timing) Overhead() time.Duration {
	if t.Compute == 0 {
		return 0
	}
	return t.RoundTrip - t.Compute
}

func (m *Module) time(op string, rt, compute time.Duration) {
	if m.timing == nil {
		m.timing = map[string]*Timing{}
	}
	t := m.timing[op]
	if t == nil {
		t = &Timing{}
		m.timing[op] = t
	}
	t.Calls++
	t.RoundTrip += rt
	t.Compute += compute
}

// Timings returns the cost of the calls so far, by call, and resets it.
// Like the modality's methods, it must not be called concurrently with
// them.
func (m *Module) Timings() map[string]Timing {
	out := make(map[string]Timing, len(m.timing))
	for op, t := range m.timing {
		out[op] = *t
	}
	m.timing = nil
	return out
}

// Spec implements module.Modality.
func (m *Module) Spec() module.Spec { return m.spec }

// Serves implements module.Partial.
func (m *Module) Serves(c module.Capability) bool { return m.caps[c] }

// Done is closed when the child has failed or the Module is closed.
func (m *Module) Done() <-chan struct{} { return m.c.failed }

// Err says why the child failed; nil while it serves (and after Close).
func (m *Module) Err() error { return m.c.unexpected() }

// Close asks the child to exit (its stdin is closed) and kills it if it
// has not within Config.StopTimeout.
func (m *Module) Close() { m.c.close() }

// width is W, the rows of latents the child reads and writes.
func (m *Module) width() int { return m.spec.Latent + m.spec.Private }

// Encode implements module.Modality.
func (m *Module) Encode(x module.Batch, mu, logvar []float32) error {
	b, err := m.batchOf(x)
	if err != nil {
		return err
	}
	defer runtime.KeepAlive(b)
	if n := b.n * m.width(); len(mu) != n || len(logvar) != n {
		return fmt.Errorf("%s: encode of %d rows into mu %d and logvar %d, want %d each", m.c.who, b.n, len(mu), len(logvar), n)
	}
	req := batchReq{Batch: b.h}
	rep, err := m.call(&req.head, &req, "encode")
	if err != nil {
		return err
	}
	if err := readFloats(mu, rep.Mu, "mu"); err != nil {
		return m.broken("encode", err)
	}
	if err := readFloats(logvar, rep.LogVar, "logvar"); err != nil {
		return m.broken("encode", err)
	}
	return nil
}

// Decode implements module.Modality.
func (m *Module) Decode(z []float32, x module.Batch, w, ll, dz []float32) error {
	b, err := m.batchOf(x)
	if err != nil {
		return err
	}
	defer runtime.KeepAlive(b)
	if len(z) != b.n*m.width() || len(dz) != len(z) || len(w) != b.n || len(ll) != b.n {
		return fmt.Errorf("%s: decode of %d rows with z %d, w %d, ll %d, dz %d", m.c.who, b.n, len(z), len(w), len(ll), len(dz))
	}
	req := decodeReq{Z: floats(nil, z), Batch: b.h, W: floats(nil, w)}
	rep, err := m.call(&req.head, &req, "decode")
	if err != nil {
		return err
	}
	if err := readFloats(ll, rep.LL, "ll"); err != nil {
		return m.broken("decode", err)
	}
	if err := readFloats(dz, rep.DZ, "dz"); err != nil {
		return m.broken("decode", err)
	}
	return nil
}

// DecodeMany implements module.MultiDecoder with the child's decode_many:
// a step's terms in one call, the latents and weights one term after the
// other, and so the likelihoods and gradients back.
func (m *Module) DecodeMany(zs [][]float32, x module.Batch, ws, lls, dzs [][]float32) error {
	b, err := m.batchOf(x)
	if err != nil {
		return err
	}
	defer runtime.KeepAlive(b)
	n, wd := b.n, m.width()
	if len(ws) != len(zs) || len(lls) != len(zs) || len(dzs) != len(zs) {
		return fmt.Errorf("%s: decode_many of %d latents with %d weights, %d likelihoods and %d gradients", m.c.who, len(zs), len(ws), len(lls), len(dzs))
	}
	req := decodeManyReq{Batch: b.h, Terms: len(zs)}
	for t := range zs {
		if len(zs[t]) != n*wd || len(dzs[t]) != n*wd || len(ws[t]) != n || len(lls[t]) != n {
			return fmt.Errorf("%s: decode_many of %d rows with term %d's z %d, w %d, ll %d, dz %d", m.c.who, n, t, len(zs[t]), len(ws[t]), len(lls[t]), len(dzs[t]))
		}
		req.Z, req.W = floats(req.Z, zs[t]), floats(req.W, ws[t])
	}
	rep, err := m.call(&req.head, &req, "decode_many")
	if err != nil {
		return err
	}
	k := len(zs)
	if len(rep.LL) != 4*k*n || len(rep.DZ) != 4*k*n*wd {
		return m.broken("decode_many", fmt.Errorf("%w: %d bytes of ll and %d of dz, want %d and %d (%d terms of %d rows of %d)", errShape, len(rep.LL), len(rep.DZ), 4*k*n, 4*k*n*wd, k, n, wd))
	}
	for t := range zs {
		if err := readFloats(lls[t], rep.LL[4*t*n:4*(t+1)*n], fmt.Sprintf("ll[%d]", t)); err != nil {
			return m.broken("decode_many", err)
		}
		if err := readFloats(dzs[t], rep.DZ[4*t*n*wd:4*(t+1)*n*wd], fmt.Sprintf("dz[%d]", t)); err != nil {
			return m.broken("decode_many", err)
		}
	}
	return nil
}

// LogLik implements module.Scorer.
func (m *Module) LogLik(z []float32, x module.Batch, ll []float32) error {
	b, err := m.batchOf(x)
	if err != nil {
		return err
	}
	defer runtime.KeepAlive(b)
	if len(z) != b.n*m.width() || len(ll) != b.n {
		return fmt.Errorf("%s: loglik of %d rows with z %d, ll %d", m.c.who, b.n, len(z), len(ll))
	}
	req := loglikReq{Z: floats(nil, z), Batch: b.h}
	rep, err := m.call(&req.head, &req, "loglik")
	if err != nil {
		return err
	}
	if err := readFloats(ll, rep.LL, "ll"); err != nil {
		return m.broken("loglik", err)
	}
	return nil
}

// Learn implements module.Learner.
func (m *Module) Learn(dmu, dlogvar []float32) error {
	if len(dmu) != len(dlogvar) || len(dmu)%m.width() != 0 {
		return fmt.Errorf("%s: learn with dmu %d and dlogvar %d, want rows of %d", m.c.who, len(dmu), len(dlogvar), m.width())
	}
	req := learnReq{DMu: floats(nil, dmu), DLogVar: floats(nil, dlogvar)}
	_, err := m.call(&req.head, &req, "learn")
	return err
}

// Discard implements module.Learner. A child that fails to discard is
// broken: the next step would learn from this one's gradients.
func (m *Module) Discard() {
	var req head
	if _, err := m.call(&req, &req, "discard"); err != nil && m.c.failure() == nil {
		m.c.fail(err)
	}
}

// FeatureLen implements module.Featurer.
func (m *Module) FeatureLen() int { return m.featureLen }

// Features implements module.Featurer.
func (m *Module) Features(x module.Batch, dst []float32) error {
	b, err := m.batchOf(x)
	if err != nil {
		return err
	}
	defer runtime.KeepAlive(b)
	if len(dst) != b.n*m.featureLen {
		return fmt.Errorf("%s: features of %d rows into %d values, want %d", m.c.who, b.n, len(dst), b.n*m.featureLen)
	}
	req := batchReq{Batch: b.h}
	rep, err := m.call(&req.head, &req, "features")
	if err != nil {
		return err
	}
	if err := readFloats(dst, rep.X, "x"); err != nil {
		return m.broken("features", err)
	}
	return nil
}

// Means implements module.Featurer.
func (m *Module) Means(z []float32, n int, dst []float32) error {
	if len(z) != n*m.width() || len(dst) != n*m.featureLen {
		return fmt.Errorf("%s: means of %d rows with z %d into %d values", m.c.who, n, len(z), len(dst))
	}
	req := latentReq{Z: floats(nil, z), N: n}
	rep, err := m.call(&req.head, &req, "means")
	if err != nil {
		return err
	}
	if err := readFloats(dst, rep.X, "x"); err != nil {
		return m.broken("means", err)
	}
	return nil
}

// Render implements module.Renderer.
func (m *Module) Render(z []float32, n int) ([]bus.Payload, error) {
	if len(z) != n*m.width() {
		return nil, fmt.Errorf("%s: render of %d rows with z %d", m.c.who, n, len(z))
	}
	req := latentReq{Z: floats(nil, z), N: n}
	rep, err := m.call(&req.head, &req, "render")
	if err != nil {
		return nil, err
	}
	if len(rep.Outputs) != n {
		return nil, m.broken("render", fmt.Errorf("%w: %d outputs for %d rows", errShape, len(rep.Outputs), n))
	}
	return rep.Outputs, nil
}

// castagnoli is the CRC-32C table of the state's checksum.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Save implements module.Saver: the child's state, as it gives it, then
// its CRC-32C, go into the checkpoint file module.Run writes. The
// checksum is serket's, so that no child restores a damaged state, however
// little its own format checks.
func (m *Module) Save(w io.Writer) error {
	var req head
	rep, err := m.call(&req, &req, "save")
	if err != nil {
		return err
	}
	if len(rep.State) == 0 {
		return m.broken("save", fmt.Errorf("%w: no state", errShape))
	}
	sum := binary.LittleEndian.AppendUint32(nil, crc32.Checksum(rep.State, castagnoli))
	if _, err := w.Write(rep.State); err != nil {
		return err
	}
	_, err = w.Write(sum)
	return err
}

// Restore implements module.Saver: a state whose checksum holds goes to
// the child, which restores it or says why not and is left as it was.
func (m *Module) Restore(r io.Reader) error {
	data, err := io.ReadAll(io.LimitReader(r, int64(m.c.cfg.MaxFrame)))
	if err != nil {
		return err
	}
	if len(data) >= m.c.cfg.MaxFrame {
		return fmt.Errorf("%s: a state of at least %d bytes, over the frame limit (--max-frame)", m.c.who, len(data))
	}
	if len(data) < 5 {
		return fmt.Errorf("%s: a state of %d bytes: damaged", m.c.who, len(data))
	}
	state, sum := data[:len(data)-4], binary.LittleEndian.Uint32(data[len(data)-4:])
	if crc32.Checksum(state, castagnoli) != sum {
		return fmt.Errorf("%s: the state's checksum does not hold: damaged", m.c.who)
	}
	req := restoreReq{State: state}
	_, err = m.call(&req.head, &req, "restore")
	return err
}
