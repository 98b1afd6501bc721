// Package python finds a Python 3 that can run serket's Python modules
// (sdk/python): one with numpy and msgpack.
package python

import (
	"errors"
	"os/exec"
)

// Candidates are tried in order: the python3 on PATH, then Debian's, which
// has the packages build/deps.sh installs even where PATH leads to another
// Python (pyenv, a virtualenv).
var Candidates = []string{"python3", "/usr/bin/python3"}

// ErrNone is the error of Interpreter when no candidate has the packages.
var ErrNone = errors.New("no python3 with numpy and msgpack: apt-get install python3-numpy python3-msgpack (build/deps.sh does)")

// Interpreter is the first candidate that imports numpy, msgpack and the
// extra modules named.
func Interpreter(modules ...string) (string, error) {
	imports := "import numpy, msgpack"
	for _, m := range modules {
		imports += ", " + m
	}
	for _, py := range Candidates {
		if exec.Command(py, "-c", imports).Run() == nil {
			return py, nil
		}
	}
	if len(modules) > 0 {
		return "", errors.New("no python3 with numpy, msgpack and " + imports[len("import numpy, msgpack, "):])
	}
	return "", ErrNone
}
