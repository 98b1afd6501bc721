//go:build linux

package placement

import (
	"context"
	"maps"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary doubles as the busy processes the placer places: run
// with busyEnv set, it spins forever (with a child spinning too when the
// value is "tree").
const busyEnv = "PLACEMENT_TEST_BUSY"

func TestMain(m *testing.M) {
	switch os.Getenv(busyEnv) {
	case "":
		os.Exit(m.Run())
	case "tree":
		kid := exec.Command(os.Args[0])
		kid.Env = append(os.Environ(), busyEnv+"=1")
		if err := kid.Start(); err != nil {
			os.Exit(2)
		}
	}
	for {
	}
}

// busy starts a spinning process (and grandchild, with tree) until the
// test ends.
func busy(t *testing.T, tree bool) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), busyEnv+"=1")
	if tree {
		cmd.Env = append(os.Environ(), busyEnv+"=tree")
	}
	cmd.SysProcAttr = &unix.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		cmd.Wait()
	})
	return cmd
}

// affinity is the CPUs every thread of pid and its descendants may use,
// failing the test when they differ.
func affinity(t *testing.T, pid int) []int {
	t.Helper()
	var got []int
	n := 0
	err := eachThread(pid, func(_ string, tid int) error {
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(tid, &set); err != nil {
			return nil // the thread ended
		}
		var cpus []int
		for c := range 1024 {
			if set.IsSet(c) {
				cpus = append(cpus, c)
			}
		}
		if n > 0 && !slices.Equal(cpus, got) {
			t.Fatalf("threads of process %d may run on %v and on %v", pid, got, cpus)
		}
		got, n = cpus, n+1
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestRunPinsBusyProcesses places three spinning processes, one with a
// spinning child, on two CPUs: each is pinned, whole tree, to one CPU of
// the two, both CPUs are used, and once the placer stops every one may
// run on both again.
func TestRunPinsBusyProcesses(t *testing.T) {
	h, _ := newHost()
	all, err := h.allowed()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 2 {
		t.Skip("needs two CPUs")
	}
	cpus := all[:2]
	procs := map[string]int{"a": busy(t, true).Process.Pid, "b": busy(t, false).Process.Pid, "c": busy(t, false).Process.Pid}
	placed := make(chan map[string]int, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, func() map[string]int { return maps.Clone(procs) }, Config{Every: 100 * time.Millisecond, CPUs: cpus,
			OnPlace: func(plan map[string]int, _ map[string]float64) { placed <- plan }})
	}()
	var plan map[string]int
	for plan == nil {
		select {
		case plan = <-placed:
		case <-time.After(20 * time.Second):
			t.Fatal("three busy processes on two CPUs were not placed within 20 s")
		}
	}
	used := map[int]bool{}
	for name, pid := range procs {
		cpu, ok := plan[name]
		if !ok {
			t.Fatalf("busy process %s was left out of %v", name, plan)
		}
		if got := affinity(t, pid); !slices.Equal(got, []int{cpu}) {
			t.Fatalf("process %s may run on %v, want cpu %d as placed", name, got, cpu)
		}
		used[cpu] = true
	}
	if len(used) != 2 {
		t.Fatalf("placement %v uses %d of the two CPUs", plan, len(used))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for name, pid := range procs {
		if got := affinity(t, pid); !slices.Equal(got, cpus) {
			t.Fatalf("after the placer stopped, process %s may run on %v, want %v", name, got, cpus)
		}
	}
}
