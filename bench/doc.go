// Package bench holds what serket's benchmarks measure with, so that each
// figure means the same in every one of them:
//
//   - [Outcome] is the fate of one request: answered with what it asked
//     for, answered with something else (an error, a crossed reply), or
//     lost (no answer within its timeout).
//   - [Tally] counts the fates of a phase's requests, by kind, and keeps
//     the latency of every ok one; [Tally.Check] says whether every request
//     sent is accounted for and none was lost.
//   - [Latency] sums latencies up as nearest-rank percentiles (the value of
//     rank ⌈q·n⌉ of the sorted n, so that p50 is a latency that happened).
//   - [Echo] is the raw NATS request-reply that serket's round trips are set
//     against in the same run: a plain responder that sends back what it
//     gets, with each request stamped so that a crossed answer is caught.
//
// The benchmarks are in packages of their own below this one: loadbench
// (concurrent clients against a running pipeline's inference service, for
// any modules), fusionbench (streaming fusion's round trip and throughput),
// samples (the built-in modalities' test items as the raw inputs a person
// gives, which serket bench load sends) and torchref (the data and weights
// exchanged with the PyTorch reference). cmd/serket wires them to flags
// and prints them. The shell and Python scripts in this directory drive
// the CLI for the figures in docs/: a benchmark's code and its scripts are
// in one room.
package bench
