package launch

import (
	"fmt"
	"path/filepath"
)

// Path resolves a path the file gives against the file's directory (Base),
// so that a pipeline file means the same from wherever serket runs; an
// absolute path, or any path of a pipeline not read from a file, is
// returned as it is.
func (p *Pipeline) Path(rel string) string {
	if rel == "" || filepath.IsAbs(rel) || p.Base == "" {
		return rel
	}
	return filepath.Join(p.Base, rel)
}

// LabelsOr is the pipeline's labels file, else the manifest of the dataset
// in data.
func (p *Pipeline) LabelsOr(data string) string {
	if p.Labels == "" {
		return data
	}
	return p.Path(p.Labels)
}

// DataDir is the file's data directory, or "" when it names none.
func (p *Pipeline) DataDir() string { return p.Path(p.Data) }

// CheckpointDir is the file's train.checkpoint_dir, or "" when it names
// none.
func (p *Pipeline) CheckpointDir() string {
	if p.Train == nil {
		return ""
	}
	return p.Path(p.Train.CheckpointDir)
}

// ClientURL is where a client reaches the pipeline's NATS server: nats.url,
// else the embedded server's port on this machine. A random port (0) cannot
// be known in advance.
func (p *Pipeline) ClientURL() (string, error) {
	switch {
	case p.NATS.URL != "":
		return p.NATS.URL, nil
	case p.NATS.Port == 0:
		return "", fmt.Errorf("launch: pipeline %q starts its server on a random port (nats.port: 0): give the server with --nats", p.Name)
	}
	return fmt.Sprintf("nats://127.0.0.1:%d", p.NATS.Port), nil
}
