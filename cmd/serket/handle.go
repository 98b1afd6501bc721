package main

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/launch"
	"github.com/serket-go/serket/procenv"
)

// The pipeline file is every command's handle: -f FILE names it (serket up
// and serket train also take it as their argument), and each setting comes
// from the first of these that gives it.
const precedenceHelp = `Every command takes the pipeline file with -f FILE (serket up and serket
train also as their argument) and finds each setting in the first of:

  1. its flag on the command line     --pipeline, --nats, --data, --checkpoint…
  2. its environment variable         SERKET_PIPELINE, NATS_URL, SERKET_DATA,
                                      SERKET_CHECKPOINT_DIR
  3. the pipeline file                pipeline:, nats.url (else the embedded
                                      server's nats.port), data:,
                                      train.checkpoint_dir
  4. the default                      default, nats://127.0.0.1:4222,
                                      data/fmnist3, runs/latest

Relative paths in a file are taken from the file's directory, wherever
serket runs; relative paths on the command line or in the environment from
the working directory.`

// annFileArg marks a command whose first argument is the pipeline file.
const annFileArg = "serket/file-argument"

// bindFile loads the command's pipeline file, if it has one, before the
// command runs, so that every command takes the file's pipeline name
// unless the command line or the environment gives another.
func (g *globals) bindFile(cmd *cobra.Command, args []string) error {
	path := g.filePath
	if cmd.Annotations[annFileArg] != "" && len(args) > 0 {
		if path != "" && path != args[0] {
			return usagef("two pipeline files: -f %s and %s", path, args[0])
		}
		path = args[0]
	}
	if path == "" {
		return nil
	}
	p, err := launch.Load(path)
	if err != nil {
		return err
	}
	g.filePath, g.file = path, p
	if !setByUser(cmd, "pipeline", procenv.EnvPipeline) {
		g.pipeline = p.Name
	}
	return nil
}

// setByUser reports whether the command line or the environment gives a
// setting (a flag the command may not have counts as not given).
func setByUser(cmd *cobra.Command, flag, env string) bool {
	if f := cmd.Flags().Lookup(flag); f != nil && f.Changed {
		return true
	}
	return env != "" && os.Getenv(env) != ""
}

// loadPipeline returns a fresh copy of the command's pipeline, for the
// command to change: the file's, else the built-in default, named as the
// command line or the environment say.
func (g *globals) loadPipeline(cmd *cobra.Command) (*launch.Pipeline, error) {
	p := launch.Default()
	if g.filePath != "" {
		var err error
		if p, err = launch.Load(g.filePath); err != nil {
			return nil, err
		}
	}
	if setByUser(cmd, "pipeline", procenv.EnvPipeline) {
		p.Name = g.pipeline
		if err := p.Validate(); err != nil {
			return nil, usagef("--pipeline %q: %v", g.pipeline, err)
		}
	}
	return p, nil
}

// dataDir is the prepared dataset: --data or $SERKET_DATA (flagValue,
// whose default reads the variable), else the file's data:, else the
// default.
func (g *globals) dataDir(cmd *cobra.Command, flagValue string) string {
	if !setByUser(cmd, "data", procenv.EnvData) && g.file != nil && g.file.Data != "" {
		return g.file.DataDir()
	}
	return flagValue
}

// checkpointDir is a run's directory: the flag, else
// $SERKET_CHECKPOINT_DIR, else the file's train.checkpoint_dir, else def.
func (g *globals) checkpointDir(cmd *cobra.Command, flag, flagValue, def string) string {
	return checkpointDirOf(cmd, flag, flagValue, g.file, def)
}

// checkpointDirOf is checkpointDir for a pipeline file of the caller's.
func checkpointDirOf(cmd *cobra.Command, flag, flagValue string, file *launch.Pipeline, def string) string {
	if f := cmd.Flags().Lookup(flag); f != nil && f.Changed {
		return flagValue
	}
	if dir := os.Getenv(procenv.EnvCheckpointDir); dir != "" {
		return dir
	}
	if file != nil && file.CheckpointDir() != "" {
		return file.CheckpointDir()
	}
	return def
}

// clientConn is how a command that talks to a running pipeline connects:
// --nats or $NATS_URL, else the file's server, else the default.
func (g *globals) clientConn(name string, log *slog.Logger) (bus.ConnConfig, error) {
	cc := g.conn(name, log)
	if cc.URL == "" && g.file != nil {
		url, err := g.file.ClientURL()
		if err != nil {
			return cc, err
		}
		cc.URL = url
	}
	return cc, nil
}
