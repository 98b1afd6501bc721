// Package nn is the float32 neural-network engine of serket's modality
// modules: fully connected and convolutional layers, activations, a
// Sequential container, the log-likelihoods the VAEs maximise, Adam, and
// checkpoints.
//
// # Conventions
//
// A batch is b rows stored row-major: a b×n matrix is a []float32 of length
// b·n whose row i is s[i·n:(i+1)·n]. Images are rows too, flattened
// channel-major (C×H×W: channel, then row, then column), as in PyTorch.
// Weights follow PyTorch's layouts and initialisation (Linear W is out×in,
// Conv2D W is outC×inC×k×k, ConvTranspose2D W is inC×outC×k×k), so weights
// can be exchanged with PyTorch models by copying.
//
// Results are written into buffers the caller passes, or that a layer or a
// Sequential owns and grows to the largest batch seen; once the buffers are
// sized, Forward, Backward, the log-likelihoods and Adam.Step do not
// allocate, so a training step does not either.
//
// # Layers
//
// A Layer's Forward(y, x, b) keeps a reference to x (not a copy) and any
// cache it needs, so x must not change until the matching Backward.
// Backward(dx, dy, b) ADDS parameter gradients into each Param.G and
// OVERWRITES dx, which may be nil to skip that work; call ZeroGrad between
// steps. Backward always refers to the latest Forward, with the same b.
// A Layer is not safe for concurrent use.
//
// # Log-likelihoods
//
// BernoulliLogLik, CategoricalLogLik, GaussianLogLik and GaussianLogLikVar
// return per-row log-likelihoods and their gradients, which are ascent
// directions: the objective is maximised, so train with Adam.Maximize set
// (or negate). Row i is scaled by its weight w[i] (w nil means all ones);
// weight 0 masks a row completely, so a missing modality's rows may hold
// anything, NaN included. Gradient outputs are overwritten and may be nil.
//
// # BLAS
//
// Every matrix product goes through gonum.org/v1/gonum/blas/blas32, so the
// implementation is chosen the gonum way, with blas32.Use. Importing nn
// installs Gonum, gonum's pure-Go kernels scheduled without allocating.
// Gonum and Adam share large jobs between the calling goroutine and
// GOMAXPROCS−1 long-lived worker goroutines, without allocating.
// Building with the openblas tag (go build -tags openblas, cgo enabled)
// installs OpenBLAS through gonum.org/v1/netlib/blas/netlib instead; nn adds
// -lopenblas to the link itself, so no CGO_LDFLAGS are needed where the
// library is installed (Debian: libopenblas-dev). Backend reports which is
// in use.
//
// # Panics
//
// Misuse is a programming error and panics with a message starting "nn: ":
// slices whose lengths do not match b and the layer's sizes, a negative b,
// Backward with a different b than the latest Forward (or before any),
// non-positive layer sizes, layers that do not chain in NewSequential, class
// ids out of range. Checkpoint problems, which come from outside the
// program, are returned as errors.
package nn
