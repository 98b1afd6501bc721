package launch_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/serket-go/serket/launch"
	"github.com/serket-go/serket/procenv"
)

// childEnv selects the behaviour of the test binary when the supervisor
// tests run it as a child process.
const childEnv = "LAUNCH_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(child(mode))
	}
	os.Exit(m.Run())
}

// child is the main function of the test binary run as a child process.
//
//	chatty:     print LAUNCH_TEST_LINES lines on stdout and on stderr, each
//	            line in two writes, and exit 0
//	exit:       exit with status LAUNCH_TEST_CODE
//	notify:     say it is ready (procenv.NotifyReady), print "notified", then exit
//	            with status LAUNCH_TEST_CODE, or if that is unset wait for
//	            SIGTERM like term
//	readyenv:   print "ready fd <$SERKET_READY_FD>" and exit 0
//	term:       print "ready", wait for SIGTERM, print "got SIGTERM", exit 0
//	restarts:   print "restart $SERKET_RESTART", exit 1
//	ignore:     ignore SIGTERM, print "ready", sleep forever
//	grandchild: start an "ignore" child, print "grandchild <pid>", sleep
//	supervise:  supervise a "term" child, printing "victim pid <pid>"
func child(mode string) int {
	switch mode {
	case "chatty":
		tag := os.Getenv("LAUNCH_TEST_TAG")
		n, _ := strconv.Atoi(os.Getenv("LAUNCH_TEST_LINES"))
		for i := range n {
			for _, f := range []*os.File{os.Stdout, os.Stderr} {
				stream := map[*os.File]string{os.Stdout: "out", os.Stderr: "err"}[f]
				line := fmt.Sprintf("%s %s %d %s\n", tag, stream, i, strings.Repeat("x", 60))
				half := len(line) / 2
				f.WriteString(line[:half])
				f.WriteString(line[half:])
			}
		}
		return 0
	case "exit":
		code, _ := strconv.Atoi(os.Getenv("LAUNCH_TEST_CODE"))
		fmt.Println("exiting with", code)
		return code
	case "notify":
		if err := procenv.NotifyReady(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 4
		}
		fmt.Println("notified")
		if code, ok := os.LookupEnv("LAUNCH_TEST_CODE"); ok {
			n, _ := strconv.Atoi(code)
			return n
		}
		return child("term")
	case "readyenv":
		fmt.Println("ready fd", os.Getenv(procenv.EnvReadyFD))
		return 0
	case "restarts":
		fmt.Println("restart", os.Getenv(procenv.EnvRestart))
		return 1
	case "term":
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		fmt.Println("ready")
		<-sig
		fmt.Println("got SIGTERM")
		return 0
	case "ignore":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ready")
		sleepForever()
	case "grandchild":
		self, _ := os.Executable()
		cmd := exec.Command(self)
		cmd.Env = childEnviron("ignore")
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		fmt.Println("grandchild", cmd.Process.Pid)
		sleepForever()
	case "supervise":
		self, _ := os.Executable()
		sup := launch.NewSupervisor([]launch.Spec{{
			Name: "victim",
			Path: self,
			Env:  childEnviron("term"),
		}}, launch.Options{
			Output: os.Stderr,
			OnEvent: func(ev launch.Event) {
				if ev.Kind == launch.Started {
					fmt.Println("victim pid", ev.PID)
				}
			},
		})
		if err := sup.Run(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown %s %q\n", childEnv, mode)
	return 3
}

func sleepForever() {
	for {
		time.Sleep(time.Hour)
	}
}

// testLogger logs to the test's output.
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}
