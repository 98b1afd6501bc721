// Package placement pins a pipeline's busy processes to CPUs by the load
// each one puts on the machine, so that the module that sets a training
// step's pace has a core of its own.
//
// A training step has phases (encode, decode, learn) that end at a barrier:
// every module waits for the slowest. When a pipeline has more busy
// processes than the machine has CPUs, the kernel shares the CPUs fairly
// between them, so the slowest module (the one every step waits for) runs
// at a fraction of a core while the faster ones catch up, and the step
// takes longer than the work needs: on two cores, three modules of which
// one (audio) does half the work trained at 1170 samples/s shared fairly
// and 1415 pinned, audio on one core and the other two on the other, and
// over longer epochs at 1399 and 1655 (`make bench-speed` and `ITEMS=30000
// bench/speed.sh`, 2026-12-06; docs/performance.md).
//
// The Placer measures each process's CPU time (every thread's, and its
// child processes': a module in another language runs under `serket
// module exec`), smooths it into a load (CPUs' worth), and, while more
// processes are busy than there are CPUs, assigns them to CPUs longest
// first, each to the least loaded CPU (LPT scheduling), which keeps the
// heaviest alone when it weighs as much as the rest. Processes below
// MinLoad (an integrator, a prior module) are left free. A new assignment
// replaces the current one only when it cuts the most loaded CPU's load by
// a tenth, so that noise does not move processes back and forth. When no
// more processes are busy than there are CPUs, every process is free
// again: the kernel does well then, and pinning would only get in the way
// of other work on the machine.
//
// A Go process notices the change: since Go 1.25 its GOMAXPROCS follows
// the CPUs it may run on. Pinning needs Linux; elsewhere Run returns at
// once with ErrUnsupported.
package placement
