//go:build !linux

package placement

func newHost() (host, error) { return nil, ErrUnsupported }
