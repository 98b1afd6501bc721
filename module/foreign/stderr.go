package foreign

import (
	"bufio"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/serket-go/serket/internal/lograte"
)

// maxLine bounds one line of the child's stderr in the log; the rest of a
// longer line is dropped.
const maxLine = 4 << 10

// logLoop writes the child's stderr into the log, a line at a time, at
// most one line per 10 ms (those held back are counted in the next), and
// keeps the last lines for the error that says why it failed.
func (c *child) logLoop(stderr *os.File) {
	defer close(c.logged)
	defer stderr.Close()
	limit := lograte.New(10 * time.Millisecond)
	r := bufio.NewReaderSize(stderr, maxLine)
	for {
		line, err := readLine(r)
		if line != "" {
			c.tail.add(line)
			limit.Log(c.cfg.Logger, slog.LevelInfo, "stderr", "child", "module", c.cfg.Hello.Name, "line", line)
		}
		if err != nil {
			return
		}
	}
}

// readLine reads a line of at most maxLine bytes, skipping the rest of a
// longer one.
func readLine(r *bufio.Reader) (string, error) {
	line, isPrefix, err := r.ReadLine()
	s := strings.TrimRight(string(line), "\r")
	for isPrefix && err == nil {
		_, isPrefix, err = r.ReadLine()
	}
	return s, err
}

// tail keeps the last n lines written to it.
type tail struct {
	mu    sync.Mutex
	lines []string
	n     int
}

func newTail(n int) *tail { return &tail{n: n} }

func (t *tail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == t.n {
		t.lines = append(t.lines[:0], t.lines[1:]...)
	}
	t.lines = append(t.lines, line)
}

// quote is the lines kept, as the end of an error message; "" for none.
func (t *tail) quote() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == 0 {
		return ""
	}
	return "; its last lines of stderr:\n  " + strings.Join(t.lines, "\n  ")
}
