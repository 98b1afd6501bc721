//go:build linux

package placement

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

type linuxHost struct{}

func newHost() (host, error) { return linuxHost{}, nil }

func (linuxHost) allowed() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("placement: the CPUs this process may use: %w", err)
	}
	var cpus []int
	for c := range 1024 {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

// cpuTime sums the time on CPU of every thread of pid and of its
// descendants, from /proc/<pid>/task/<tid>/schedstat (nanoseconds).
func (linuxHost) cpuTime(pid int) (time.Duration, error) {
	var total time.Duration
	err := eachThread(pid, func(dir string, _ int) error {
		b, err := os.ReadFile(dir + "/schedstat")
		if err != nil {
			return nil // the thread ended
		}
		f, _, _ := bytes.Cut(b, []byte(" "))
		ns, err := strconv.ParseInt(string(f), 10, 64)
		if err != nil {
			return fmt.Errorf("placement: %s/schedstat: %w", dir, err)
		}
		total += time.Duration(ns)
		return nil
	})
	return total, err
}

// pin sets the CPUs of every thread of pid and of its descendants.
func (linuxHost) pin(pid int, cpus []int) error {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	return eachThread(pid, func(_ string, tid int) error {
		if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("placement: pin thread %d of %d: %w", tid, pid, err)
		}
		return nil
	})
}

// eachThread calls f with the /proc directory and id of every thread of
// pid and of its descendants (found through each thread's children file).
// It fails when pid itself is gone.
func eachThread(pid int, f func(dir string, tid int) error) error {
	todo, first := []int{pid}, true
	for len(todo) > 0 {
		p := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		base := "/proc/" + strconv.Itoa(p) + "/task"
		tasks, err := os.ReadDir(base)
		if err != nil {
			if first {
				return fmt.Errorf("placement: process %d: %w", pid, err)
			}
			continue // a descendant that ended
		}
		first = false
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			dir := base + "/" + t.Name()
			if err := f(dir, tid); err != nil {
				return err
			}
			kids, _ := os.ReadFile(dir + "/children")
			for _, k := range strings.Fields(string(kids)) {
				if c, err := strconv.Atoi(k); err == nil {
					todo = append(todo, c)
				}
			}
		}
	}
	return nil
}
