package module

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/micro"

	"github.com/serket-go/serket/bus"
)

// The module's side of evaluation (package eval talks to any module this
// way, whatever its language or process): its own items encoded by sample
// id (handleEncode), their features and its decoder's means (Featurer, on
// …features.<name>), and the log-likelihood of its items under latents
// (…score.<name>, with Scorer or Decode). Like inference, each runs on the
// actor between training steps.

// errNotHere is the reply's code 501: the module cannot do what is asked.
func (r *runner) notHere(req micro.Request, what, iface string) {
	r.replyError(req, "501", fmt.Errorf("module %s cannot %s (it does not implement module.%s)", r.spec.Name, what, iface))
}

// items loads the module's own items by sample id for an evaluation
// request; err says why it cannot.
func (r *runner) items(ids []uint64) (Batch, []bool, error) {
	ld, ok := As[Loader](r.m)
	if !ok {
		return nil, nil, fmt.Errorf("module %s has no items of its own (it does not implement module.Loader)", r.spec.Name)
	}
	x, present, err := ld.LoadBatch(ids)
	if err == nil && (x.Len() != len(ids) || len(present) != len(ids)) {
		err = fmt.Errorf("LoadBatch returned %d rows and %d presence flags for %d ids", x.Len(), len(present), len(ids))
	}
	if err != nil {
		return nil, nil, fmt.Errorf("module %s: load: %w", r.spec.Name, err)
	}
	return x, present, nil
}

func (r *runner) handleFeatures(req micro.Request) {
	var in bus.FeatureRequest
	if err := bus.UnmarshalFrom(req.Subject(), req.Data(), &in, bus.Expect{Latent: r.spec.Latent}); err != nil {
		r.replyError(req, "400", err)
		return
	}
	f, ok := As[Featurer](r.m)
	if !ok {
		r.notHere(req, "show features", "Featurer")
		return
	}
	r.serveRequest(req, "Features/Means", func() (bus.Message, error) {
		n, zr, fl := len(in.IDs), in.Z.Rows(), f.FeatureLen()
		out := &bus.FeatureReply{}
		x := make([]float32, (n+zr)*fl)
		if n > 0 {
			b, present, err := r.items(in.IDs)
			if err != nil {
				return nil, err
			}
			if err := f.Features(b, x[:n*fl]); err != nil {
				return nil, fmt.Errorf("module %s: features: %w", r.spec.Name, err)
			}
			out.Present = append(present, make([]bool, zr)...)
			for i := n; i < n+zr; i++ {
				out.Present[i] = true
			}
		}
		if zr > 0 {
			z, err := r.whole(in.Z.Data, zr)
			if err != nil {
				return nil, fmt.Errorf("module %s: means: %w", r.spec.Name, err)
			}
			if err := f.Means(z, zr, x[n*fl:]); err != nil {
				return nil, fmt.Errorf("module %s: means: %w", r.spec.Name, err)
			}
		}
		out.X = bus.Matrix(n+zr, fl, x)
		return out, nil
	})
}

func (r *runner) handleScore(req micro.Request) {
	var in bus.ScoreRequest
	if err := bus.UnmarshalFrom(req.Subject(), req.Data(), &in, bus.Expect{Latent: r.spec.Latent}); err != nil {
		r.replyError(req, "400", err)
		return
	}
	r.serveRequest(req, "LogLik", func() (bus.Message, error) {
		x, present, err := r.items(in.IDs)
		if err != nil {
			return nil, err
		}
		rows := in.Z.Rows()
		k := rows / len(in.IDs)
		rep, ok := x.(Picker)
		if !ok && k > 1 {
			return nil, fmt.Errorf("module %s cannot score an item under several latents (its batches are not module.Picker)", r.spec.Name)
		}
		if k > 1 {
			pick := make([]int, rows)
			for i := range pick {
				pick[i] = i / k
			}
			x = rep.Pick(pick)
		}
		ll := make([]float32, rows)
		if err := r.logLik(in.Z.Data, x, ll); err != nil {
			return nil, err
		}
		for i := range ll {
			if !present[i/k] {
				ll[i] = 0
			}
		}
		return &bus.ScoreReply{LL: bus.Vector(ll), Present: present}, nil
	})
}

// logLik writes log p(x_i | z_i) into ll: by Scorer when the modality has
// one, else by Decode with unit weights (whose decoder gradients a Learner
// then discards: nothing is learned from evaluation).
func (r *runner) logLik(z []float32, x Batch, ll []float32) error {
	z, err := r.whole(z, x.Len())
	if err != nil {
		return fmt.Errorf("module %s: score: %w", r.spec.Name, err)
	}
	if s, ok := As[Scorer](r.m); ok {
		if err := s.LogLik(z, x, ll); err != nil {
			return fmt.Errorf("module %s: score: %w", r.spec.Name, err)
		}
		return nil
	}
	n := x.Len()
	w := make([]float32, n)
	for i := range w {
		w[i] = 1
	}
	err = r.m.Decode(z, x, w, ll, make([]float32, len(z)))
	if l, ok := As[Learner](r.m); ok {
		l.Discard()
	}
	if err != nil {
		return fmt.Errorf("module %s: score: %w", r.spec.Name, err)
	}
	return nil
}

// serveRequest runs f on the actor (safely: a panic in the modality is an
// error reply) and replies with its message, or with its error (400).
func (r *runner) serveRequest(req micro.Request, what string, f func() (bus.Message, error)) {
	if !r.do(func() {
		var out bus.Message
		err := r.safely(what, func() error {
			var err error
			out, err = f()
			return err
		})
		if err != nil {
			r.replyError(req, "400", err)
			return
		}
		r.reply(req, out)
	}) {
		r.replyError(req, "503", errors.New("module "+r.spec.Name+" is stopping"))
	}
}
