package mvae

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"

	"github.com/serket-go/serket/nn"
)

// Config sizes the networks.
type Config struct {
	Latent int // D, the shared latent; default 64
	// Private is P, a private latent beside the shared one (module.Spec
	// Private); the networks' latent is D + P wide (Width). Default 0.
	Private   int
	In, Out   int     // encoder input and decoder output sizes (required)
	Hidden    int     // units per hidden layer; default 512
	EncLayers int     // hidden layers of the encoder; default 2
	DecLayers int     // hidden layers of the decoder; default 3
	LR        float32 // Adam learning rate; default 1e-3
	AdamEps   float32 // Adam's ε; default 1e-8 (a large one makes Adam a scaled SGD, which tests use)
	Seed      uint64  // initialisation
}

func (c *Config) defaults() error {
	if c.Latent == 0 {
		c.Latent = 64
	}
	if c.Hidden == 0 {
		c.Hidden = 512
	}
	if c.EncLayers == 0 {
		c.EncLayers = 2
	}
	if c.DecLayers == 0 {
		c.DecLayers = 3
	}
	if c.LR == 0 {
		c.LR = 1e-3
	}
	switch {
	case c.Latent < 1 || c.Latent > 4096:
		return fmt.Errorf("latent size %d: want 1 to 4096", c.Latent)
	case c.Private < 0 || c.Private > 4096:
		return fmt.Errorf("private latent size %d: want 0 to 4096", c.Private)
	case c.In < 1 || c.Out < 1:
		return fmt.Errorf("input size %d and output size %d must be positive", c.In, c.Out)
	case c.Hidden < 1 || c.EncLayers < 1 || c.DecLayers < 1:
		return errors.New("hidden units and layers must be positive")
	case c.LR <= 0 || c.LR != c.LR:
		return fmt.Errorf("learning rate %v: want > 0", c.LR)
	}
	return nil
}

// Net is an encoder, a decoder and their optimizer.
type Net struct {
	cfg      Config
	Enc, Dec *nn.Sequential
	params   []*nn.Param
	opt      *nn.Adam

	b    int       // rows of the latest Encode
	dEnc []float32 // b×2D gradient of the encoder's output
	dz   []float32
}

// New returns a Net with freshly initialised parameters (deterministic for
// cfg.Seed).
func New(cfg Config) (*Net, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6d766165))
	mlp := func(prefix string, in, hidden, layers, out int) *nn.Sequential {
		var ls []nn.Layer
		for i := 0; i < layers; i++ {
			ls = append(ls, nn.NewLinear(fmt.Sprintf("%s.%d", prefix, i), in, hidden, rng), nn.NewSiLU(hidden))
			in = hidden
		}
		ls = append(ls, nn.NewLinear(fmt.Sprintf("%s.%d", prefix, layers), in, out, rng))
		return nn.NewSequential(ls...)
	}
	n := &Net{cfg: cfg}
	n.Enc = mlp("enc", cfg.In, cfg.Hidden, cfg.EncLayers, 2*cfg.Width())
	n.Dec = mlp("dec", cfg.Width(), cfg.Hidden, cfg.DecLayers, cfg.Out)
	n.params = append(n.Enc.Params(), n.Dec.Params()...)
	n.opt = nn.NewAdam(n.params, cfg.LR)
	n.opt.Maximize = true
	if cfg.AdamEps > 0 {
		n.opt.Eps = cfg.AdamEps
	}
	return n, nil
}

// Width is the networks' latent: the shared D and the private P.
func (c Config) Width() int { return c.Latent + c.Private }

// Config returns the configuration with defaults filled in.
func (n *Net) Config() Config { return n.cfg }

// Params returns every parameter, encoder first.
func (n *Net) Params() []*nn.Param { return n.params }

// Encode writes the posterior of b input rows x (b×In) into mu and logvar
// (b×Width). The encoder keeps a reference to x for Learn.
func (n *Net) Encode(x []float32, b int, mu, logvar []float32) {
	d := n.cfg.Width()
	if len(x) != b*n.cfg.In || len(mu) != b*d || len(logvar) != b*d {
		panic(fmt.Sprintf("mvae: Encode of %d rows with x %d, mu %d, logvar %d", b, len(x), len(mu), len(logvar)))
	}
	out := n.Enc.Forward(x, b)
	for i := 0; i < b; i++ {
		copy(mu[i*d:(i+1)*d], out[i*2*d:i*2*d+d])
		copy(logvar[i*d:(i+1)*d], out[i*2*d+d:(i+1)*2*d])
	}
	n.b = b
}

// Forward runs the decoder on b latents z (b×Width) and returns its output
// (b×Out), valid until the next Forward.
func (n *Net) Forward(z []float32, b int) []float32 {
	if len(z) != b*n.cfg.Width() {
		panic(fmt.Sprintf("mvae: Forward of %d rows with z %d", b, len(z)))
	}
	return n.Dec.Forward(z, b)
}

// Backward back-propagates dout (b×Out, the gradient of the objective with
// respect to the latest Forward's output) through the decoder, accumulating
// its parameter gradients, and writes the gradient with respect to z into dz.
func (n *Net) Backward(dout []float32, b int, dz []float32) {
	g := n.Dec.Backward(dout, b, true)
	copy(dz, g)
}

// Learn back-propagates dmu and dlogvar (b×Width, for the latest Encode)
// through the encoder, takes one Adam step ascending the objective on every
// parameter, and clears the gradients.
func (n *Net) Learn(dmu, dlogvar []float32) error {
	if err := n.BackwardEncoder(dmu, dlogvar); err != nil {
		return err
	}
	n.opt.Step()
	nn.ZeroGrad(n.params)
	return nil
}

// BackwardEncoder is Learn without the step: it back-propagates dmu and
// dlogvar (b×Width, for the latest Encode) through the encoder and adds to
// the encoder's parameter gradients, so that every parameter's G then holds
// the step's whole gradient (the decoder's came with Backward). It is how
// a reference that computes the step another way (bench/torch_check.py)
// reads serket's gradients; Discard clears them.
func (n *Net) BackwardEncoder(dmu, dlogvar []float32) error {
	b, d := n.b, n.cfg.Width()
	if len(dmu) != b*d || len(dlogvar) != b*d {
		return fmt.Errorf("%d and %d encoder gradients for a batch of %d×%d", len(dmu), len(dlogvar), b, d)
	}
	if cap(n.dEnc) < b*2*d {
		n.dEnc = make([]float32, b*2*d)
	}
	g := n.dEnc[:b*2*d]
	for i := 0; i < b; i++ {
		copy(g[i*2*d:i*2*d+d], dmu[i*d:(i+1)*d])
		copy(g[i*2*d+d:(i+1)*2*d], dlogvar[i*d:(i+1)*d])
	}
	n.Enc.Backward(g, b, false)
	return nil
}

// Discard clears the accumulated gradients.
func (n *Net) Discard() { nn.ZeroGrad(n.params) }

// Save writes the parameters and the optimizer state as a checkpoint of the
// given kind (the modality's name) with meta.
func (n *Net) Save(w io.Writer, kind string, meta map[string]string) error {
	return nn.Save(w, kind, n.params, n.opt, meta)
}

// CheckpointBound is the most bytes a checkpoint of n can hold: its
// parameters and Adam's two moments, 4 bytes a value, and 1 MiB for names,
// shapes, framing and metadata (a few KiB, a caption vocabulary among
// them). A reader of checkpoints bounds what it reads whole by it.
func (n *Net) CheckpointBound() int64 {
	var v int64
	for _, p := range n.params {
		v += int64(len(p.W))
	}
	return 3*4*v + 1<<20
}

// Restore reads what Save wrote; it changes nothing unless the checkpoint is
// valid, of this kind, and of these shapes.
func (n *Net) Restore(r io.Reader, kind string) (map[string]string, error) {
	return nn.Load(r, kind, n.params, n.opt)
}
