package toy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/module"
)

// Config configures a toy modality.
type Config struct {
	Name     string  // module name
	Dim      int     // n, observation size
	Latent   int     // D, latent size
	Noise    float32 // σ of the observation noise (data and likelihood); default 0.1
	LR       float32 // Adam learning rate; default 1e-2
	Seed     uint64  // initial parameters
	DataSeed uint64  // the shared synthetic data; the same in every module of a pipeline
	Items    int     // dataset size: ids 0..Items-1 exist; default 10000
	Missing  float64 // fraction of items this modality lacks (seeded by id); default 0
}

// Toy is the linear-Gaussian modality. See the package doc.
type Toy struct {
	cfg  Config
	p, g params // parameters and their accumulated gradients
	opt  adam
	// the latest Encode's input, for Learn
	x []float32
	b int
	// the data's generating model (Truth), made once
	a, c []float64
}

// params holds every parameter, flattened: W (D×n), B (D), S (D, the
// log-variance), V (n×D), C (n).
type params struct {
	W, B, S, V, C []float32
}

func (p *params) all() [][]float32 { return [][]float32{p.W, p.B, p.S, p.V, p.C} }

var (
	_ module.Learner  = (*Toy)(nil)
	_ module.Loader   = (*Toy)(nil)
	_ module.Parser   = (*Toy)(nil)
	_ module.Renderer = (*Toy)(nil)
	_ module.Saver    = (*Toy)(nil)
	_ module.Featurer = (*Toy)(nil)
)

// New returns a toy modality with freshly initialised parameters.
func New(cfg Config) (*Toy, error) {
	if cfg.Noise == 0 {
		cfg.Noise = 0.1
	}
	if cfg.LR == 0 {
		cfg.LR = 1e-2
	}
	if cfg.Items == 0 {
		cfg.Items = 10000
	}
	switch {
	case !bus.ValidName(cfg.Name):
		return nil, fmt.Errorf("toy: name %q is not a valid module name", cfg.Name)
	case cfg.Dim < 1 || cfg.Dim > 4096:
		return nil, fmt.Errorf("toy %s: dim %d: want 1 to 4096", cfg.Name, cfg.Dim)
	case cfg.Latent < 1 || cfg.Latent > 4096:
		return nil, fmt.Errorf("toy %s: latent %d: want 1 to 4096", cfg.Name, cfg.Latent)
	case cfg.Noise <= 0 || math.IsNaN(float64(cfg.Noise)):
		return nil, fmt.Errorf("toy %s: noise %v: want > 0", cfg.Name, cfg.Noise)
	case cfg.LR <= 0:
		return nil, fmt.Errorf("toy %s: learning rate %v: want > 0", cfg.Name, cfg.LR)
	case cfg.Items < 1:
		return nil, fmt.Errorf("toy %s: items %d: want ≥ 1", cfg.Name, cfg.Items)
	case cfg.Missing < 0 || cfg.Missing >= 1:
		return nil, fmt.Errorf("toy %s: missing fraction %v: want 0 ≤ f < 1", cfg.Name, cfg.Missing)
	}
	n, d := cfg.Dim, cfg.Latent
	t := &Toy{cfg: cfg}
	t.p = params{W: make([]float32, d*n), B: make([]float32, d), S: make([]float32, d), V: make([]float32, n*d), C: make([]float32, n)}
	t.g = params{W: make([]float32, d*n), B: make([]float32, d), S: make([]float32, d), V: make([]float32, n*d), C: make([]float32, n)}
	rng := rand.New(rand.NewPCG(cfg.Seed, nameHash(cfg.Name)))
	for i := range t.p.W {
		t.p.W[i] = float32(rng.NormFloat64() * 0.1)
	}
	for i := range t.p.V {
		t.p.V[i] = float32(rng.NormFloat64() * 0.1)
	}
	t.opt = newAdam(t.p.all(), cfg.LR)
	t.a, t.c = t.truth()
	return t, nil
}

// Config returns the configuration the modality was made with.
func (t *Toy) Config() Config { return t.cfg }

// Params returns the parameter slices themselves (changing them changes the
// model): the encoder's W (D×n), B (D) and log-variance S (D), and the
// decoder's V (n×D) and C (n). Tests use them to build models with known
// answers.
func (t *Toy) Params() (w, b, s, v, c []float32) { return t.p.W, t.p.B, t.p.S, t.p.V, t.p.C }

// Spec implements module.Modality.
func (t *Toy) Spec() module.Spec {
	return module.Spec{Name: t.cfg.Name, Latent: t.cfg.Latent, Likelihood: "gaussian"}
}

// Obs is a batch of toy observations: Len()×n row-major.
type Obs struct {
	N    int // columns
	Data []float32
}

// Len implements module.Batch.
func (o *Obs) Len() int {
	if o.N == 0 {
		return 0
	}
	return len(o.Data) / o.N
}

// Pick implements module.Picker.
func (o *Obs) Pick(rows []int) module.Batch {
	out := &Obs{N: o.N, Data: make([]float32, len(rows)*o.N)}
	for i, r := range rows {
		copy(out.Data[i*o.N:(i+1)*o.N], o.Data[r*o.N:(r+1)*o.N])
	}
	return out
}

func (t *Toy) obs(x module.Batch) (*Obs, error) {
	o, ok := x.(*Obs)
	if !ok {
		return nil, fmt.Errorf("toy %s: batch of type %T, want *toy.Obs", t.cfg.Name, x)
	}
	if o.N != t.cfg.Dim {
		return nil, fmt.Errorf("toy %s: observations of size %d, want %d", t.cfg.Name, o.N, t.cfg.Dim)
	}
	return o, nil
}

// Encode implements module.Modality: mu = W x + b, logvar = s.
func (t *Toy) Encode(x module.Batch, mu, logvar []float32) error {
	o, err := t.obs(x)
	if err != nil {
		return err
	}
	n, d, b := t.cfg.Dim, t.cfg.Latent, o.Len()
	if len(mu) != b*d || len(logvar) != b*d {
		panic(fmt.Sprintf("toy: Encode of %d rows into mu %d, logvar %d", b, len(mu), len(logvar)))
	}
	for i := 0; i < b; i++ {
		xi := o.Data[i*n : (i+1)*n]
		for k := 0; k < d; k++ {
			s := t.p.B[k]
			wk := t.p.W[k*n : (k+1)*n]
			for j, v := range xi {
				s += wk[j] * v
			}
			mu[i*d+k] = s
			logvar[i*d+k] = t.p.S[k]
		}
	}
	t.x = append(t.x[:0], o.Data...)
	t.b = b
	return nil
}

// Decode implements module.Modality with the Gaussian likelihood
// N(x; V z + c, σ² I).
func (t *Toy) Decode(z []float32, x module.Batch, w, ll, dz []float32) error {
	o, err := t.obs(x)
	if err != nil {
		return err
	}
	n, d, b := t.cfg.Dim, t.cfg.Latent, o.Len()
	if len(z) != b*d || len(w) != b || len(ll) != b || len(dz) != b*d {
		panic(fmt.Sprintf("toy: Decode of %d rows with z %d, w %d, ll %d, dz %d", b, len(z), len(w), len(ll), len(dz)))
	}
	inv := 1 / float64(t.cfg.Noise*t.cfg.Noise)
	norm := -0.5 * float64(n) * math.Log(2*math.Pi/inv)
	r := make([]float32, n)
	for i := 0; i < b; i++ {
		dzi := dz[i*d : (i+1)*d]
		clear(dzi)
		if w[i] == 0 {
			ll[i] = 0
			continue
		}
		zi, xi := z[i*d:(i+1)*d], o.Data[i*n:(i+1)*n]
		var sq float64
		for j := 0; j < n; j++ {
			m := t.p.C[j]
			vj := t.p.V[j*d : (j+1)*d]
			for k, zk := range zi {
				m += vj[k] * zk
			}
			e := float64(xi[j] - m)
			sq += e * e
			r[j] = float32(e * inv) // ∂ll/∂mean_j
		}
		ll[i] = float32(norm - 0.5*sq*inv)
		wi := w[i]
		for j := 0; j < n; j++ {
			rj := wi * r[j]
			t.g.C[j] += rj
			vj, gj := t.p.V[j*d:(j+1)*d], t.g.V[j*d:(j+1)*d]
			for k := range dzi {
				dzi[k] += rj * vj[k]
				gj[k] += rj * zi[k]
			}
		}
	}
	return nil
}

// Learn implements module.Learner.
func (t *Toy) Learn(dmu, dlogvar []float32) error {
	n, d, b := t.cfg.Dim, t.cfg.Latent, t.b
	if len(dmu) != b*d || len(dlogvar) != b*d {
		return fmt.Errorf("toy %s: Learn with %d and %d gradients for a batch of %d×%d", t.cfg.Name, len(dmu), len(dlogvar), b, d)
	}
	for i := 0; i < b; i++ {
		xi := t.x[i*n : (i+1)*n]
		for k := 0; k < d; k++ {
			g := dmu[i*d+k]
			t.g.B[k] += g
			t.g.S[k] += dlogvar[i*d+k]
			gw := t.g.W[k*n : (k+1)*n]
			for j, v := range xi {
				gw[j] += g * v
			}
		}
	}
	t.opt.step(t.p.all(), t.g.all())
	t.Discard()
	return nil
}

// Discard implements module.Learner.
func (t *Toy) Discard() {
	for _, g := range t.g.all() {
		clear(g)
	}
}

// LoadBatch implements module.Loader with the synthetic paired data.
func (t *Toy) LoadBatch(ids []uint64) (module.Batch, []bool, error) {
	n, d := t.cfg.Dim, t.cfg.Latent
	a, c := t.a, t.c
	o := &Obs{N: n, Data: make([]float32, len(ids)*n)}
	present := make([]bool, len(ids))
	var stack [64]float64 // the item's latent
	z := stack[:0]
	if d > len(stack) {
		z = make([]float64, d)
	}
	z = z[:d]
	// One generator each, reseeded per item: an item's data depend on its
	// id alone, and a batch costs no allocation per item.
	var zs, ns rand.PCG
	zr, nr := rand.New(&zs), rand.New(&ns)
	for i, id := range ids {
		if id >= uint64(t.cfg.Items) {
			return nil, nil, fmt.Errorf("toy %s: no item %d (the dataset has ids 0 to %d)", t.cfg.Name, id, t.cfg.Items-1)
		}
		zs.Seed(t.cfg.DataSeed, id)
		for k := range z {
			z[k] = zr.NormFloat64()
		}
		ns.Seed(t.cfg.DataSeed^nameHash(t.cfg.Name), id)
		present[i] = nr.Float64() >= t.cfg.Missing
		for j := 0; j < n; j++ {
			v := c[j] + float64(t.cfg.Noise)*nr.NormFloat64()
			for k := range z {
				v += a[j*d+k] * z[k]
			}
			o.Data[i*n+j] = float32(v)
		}
	}
	return o, present, nil
}

// Truth returns the generating A (n×D, row-major) and c (n) of this module's data.
func (t *Toy) Truth() (a, c []float64) { return slices.Clone(t.a), slices.Clone(t.c) }

func (t *Toy) truth() (a, c []float64) {
	n, d := t.cfg.Dim, t.cfg.Latent
	r := rand.New(rand.NewPCG(t.cfg.DataSeed, nameHash(t.cfg.Name)^0x9e3779b97f4a7c15))
	a, c = make([]float64, n*d), make([]float64, n)
	for i := range a {
		a[i] = r.NormFloat64() / math.Sqrt(float64(d))
	}
	for i := range c {
		c[i] = r.NormFloat64()
	}
	return a, c
}

// Parse implements module.Parser: each payload is text/plain with n numbers.
func (t *Toy) Parse(raw []bus.Payload) (module.Batch, error) {
	n := t.cfg.Dim
	o := &Obs{N: n, Data: make([]float32, 0, len(raw)*n)}
	for i, p := range raw {
		if !strings.HasPrefix(p.Type, "text/plain") {
			return nil, fmt.Errorf("observation %d: content type %q, want text/plain (%d numbers)", i, p.Type, n)
		}
		fields := strings.FieldsFunc(string(p.Data), func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' || r == '[' || r == ']' })
		if len(fields) != n {
			return nil, fmt.Errorf("observation %d: %d numbers, want %d", i, len(fields), n)
		}
		for j, f := range fields {
			v, err := strconv.ParseFloat(f, 32)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("observation %d: number %d is %q, want a finite number", i, j+1, f)
			}
			o.Data = append(o.Data, float32(v))
		}
	}
	return o, nil
}

// Render implements module.Renderer: the decoder mean as text.
func (t *Toy) Render(z []float32, rows int) ([]bus.Payload, error) {
	n := t.cfg.Dim
	means := make([]float32, rows*n)
	if err := t.Means(z, rows, means); err != nil {
		return nil, err
	}
	out := make([]bus.Payload, rows)
	for i := 0; i < rows; i++ {
		var sb strings.Builder
		for j, m := range means[i*n : (i+1)*n] {
			if j > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString(strconv.FormatFloat(float64(m), 'g', 5, 32))
		}
		out[i] = bus.Payload{Type: "text/plain; charset=utf-8", Data: []byte(sb.String())}
	}
	return out, nil
}

// FeatureLen implements module.Featurer: an observation's size.
func (t *Toy) FeatureLen() int { return t.cfg.Dim }

// Features implements module.Featurer: the observations themselves.
func (t *Toy) Features(x module.Batch, dst []float32) error {
	o, err := t.obs(x)
	if err != nil {
		return err
	}
	if len(dst) != len(o.Data) {
		return fmt.Errorf("toy %s: %d features for %d values", t.cfg.Name, len(dst), len(o.Data))
	}
	copy(dst, o.Data)
	return nil
}

// Means implements module.Featurer: the decoder mean V z + c of each row.
func (t *Toy) Means(z []float32, rows int, dst []float32) error {
	n, d := t.cfg.Dim, t.cfg.Latent
	if len(z) != rows*d || len(dst) != rows*n {
		return fmt.Errorf("toy %s: %d latent values and %d means for %d rows", t.cfg.Name, len(z), len(dst), rows)
	}
	for i := 0; i < rows; i++ {
		for j := 0; j < n; j++ {
			m := t.p.C[j]
			for k := 0; k < d; k++ {
				m += t.p.V[j*d+k] * z[i*d+k]
			}
			dst[i*n+j] = m
		}
	}
	return nil
}

// The checkpoint format: magic, then a msgpack body, then the body's CRC-32.
const (
	magic         = "SERKET-TOY\x00"
	formatVersion = 1
)

type checkpoint struct {
	Version int         `msgpack:"v"`
	Name    string      `msgpack:"name"`
	Dim     int         `msgpack:"dim"`
	Latent  int         `msgpack:"latent"`
	Params  [][]float32 `msgpack:"params"`
	M       [][]float32 `msgpack:"adam_m"`
	V       [][]float32 `msgpack:"adam_v"`
	T       int         `msgpack:"adam_t"`
}

// Save implements module.Saver.
func (t *Toy) Save(w io.Writer) error {
	body, err := msgpack.Marshal(&checkpoint{Version: formatVersion, Name: t.cfg.Name, Dim: t.cfg.Dim, Latent: t.cfg.Latent,
		Params: t.p.all(), M: t.opt.m, V: t.opt.v, T: t.opt.t})
	if err != nil {
		return err
	}
	var sum [4]byte
	binary.LittleEndian.PutUint32(sum[:], crc32.ChecksumIEEE(body))
	for _, b := range [][]byte{[]byte(magic), body, sum[:]} {
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// Restore implements module.Saver; it changes nothing unless the whole
// checkpoint is valid and fits this modality's shape.
func (t *Toy) Restore(r io.Reader) error {
	data, err := io.ReadAll(io.LimitReader(r, 1<<30))
	if err != nil {
		return err
	}
	if len(data) < len(magic)+4 || !bytes.Equal(data[:len(magic)], []byte(magic)) {
		return fmt.Errorf("%w: not a toy checkpoint (bad magic or truncated)", module.ErrCorruptCheckpoint)
	}
	body := data[len(magic) : len(data)-4]
	if crc32.ChecksumIEEE(body) != binary.LittleEndian.Uint32(data[len(data)-4:]) {
		return fmt.Errorf("%w: checksum mismatch (corrupt or truncated)", module.ErrCorruptCheckpoint)
	}
	var c checkpoint
	if err := msgpack.Unmarshal(body, &c); err != nil {
		return fmt.Errorf("%w: undecodable checkpoint: %v", module.ErrCorruptCheckpoint, err)
	}
	if c.Version != formatVersion {
		return fmt.Errorf("checkpoint format %d, this build reads %d", c.Version, formatVersion)
	}
	if c.Dim != t.cfg.Dim || c.Latent != t.cfg.Latent {
		return fmt.Errorf("checkpoint of module %q is dim %d latent %d, this module is %q dim %d latent %d", c.Name, c.Dim, c.Latent, t.cfg.Name, t.cfg.Dim, t.cfg.Latent)
	}
	want := t.p.all()
	for _, set := range [][][]float32{c.Params, c.M, c.V} {
		if len(set) != len(want) {
			return errors.New("checkpoint has the wrong number of parameter tensors")
		}
		for i := range set {
			if len(set[i]) != len(want[i]) {
				return fmt.Errorf("checkpoint tensor %d has %d values, want %d", i, len(set[i]), len(want[i]))
			}
		}
	}
	for i := range want {
		copy(want[i], c.Params[i])
		copy(t.opt.m[i], c.M[i])
		copy(t.opt.v[i], c.V[i])
	}
	t.opt.t = c.T
	return nil
}

func nameHash(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// adam is Adam that ascends: p += lr · m̂ / (√v̂ + ε).
type adam struct {
	lr   float32
	m, v [][]float32
	t    int
}

func newAdam(ps [][]float32, lr float32) adam {
	a := adam{lr: lr}
	for _, p := range ps {
		a.m = append(a.m, make([]float32, len(p)))
		a.v = append(a.v, make([]float32, len(p)))
	}
	return a
}

func (a *adam) step(ps, gs [][]float32) {
	const b1, b2, eps = 0.9, 0.999, 1e-8
	a.t++
	c1 := 1 - math.Pow(b1, float64(a.t))
	c2 := 1 - math.Pow(b2, float64(a.t))
	step := float32(float64(a.lr) * math.Sqrt(c2) / c1)
	for i, p := range ps {
		m, v, g := a.m[i], a.v[i], gs[i]
		for j := range p {
			m[j] = b1*m[j] + (1-b1)*g[j]
			v[j] = b2*v[j] + (1-b2)*g[j]*g[j]
			p[j] += step * m[j] / (float32(math.Sqrt(float64(v[j]))) + eps)
		}
	}
}
