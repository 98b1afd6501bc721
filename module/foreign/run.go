package foreign

import (
	"context"

	"github.com/serket-go/serket/module"
)

// Run starts the child and serves it on the bus with module.Run until ctx
// is done or the child fails. A failed child is Run's error, so that the
// process exits non-zero and its supervisor restarts it by its policy.
func Run(ctx context.Context, cfg Config, opts module.Options) error {
	m, err := Start(cfg)
	if err != nil {
		return err
	}
	defer m.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-m.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	err = module.Run(ctx, m, opts)
	if failed := m.Err(); failed != nil {
		return failed
	}
	return err
}
