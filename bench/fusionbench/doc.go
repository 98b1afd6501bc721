// Package fusionbench measures streaming fusion (DESIGN.md section 5) on an
// embedded nats-server on 127.0.0.1 (TCP, a random port), with the
// integrator, every module and the two parties of the raw echo each on
// their own connection, as separate processes would be (they share this
// process and its CPUs, which Result records).
//
// Round trip: a module publishes a timestamped 1×Latent posterior on its
// obs.post subject, as module/stream.go does; a real integrator
// (integrator.Run, MinPeriod 0) fuses it and publishes a belief; the module
// decodes beliefs until one names its posterior (belief time − source age =
// posterior time) and carries its fusion with the prior. N round trips, one
// in flight at a time, timed from before the posterior is encoded to after
// the belief is decoded. Next to it, in the same run and on the same
// server, N raw NATS request-replies of the posterior's size to a plain
// echo responder on another connection (bench.Echo). The two are
// interleaved in blocks, after a block of each that is not counted, so that
// noise on the machine hits both alike.
//
// Throughput: for every Modules × Latents cell, a fresh integrator and that
// many synthetic modules, each on its own connection and each in a closed
// loop: publish a posterior, wait until a belief includes it, publish the
// next. One listener connection decodes each belief once and tells the
// modules whose posteriors it names (so the bench's own decoding does not
// grow with the number of modules). A closed loop keeps at most one
// posterior per module in flight, so nothing queues anywhere and the
// integrator is always offered a fresh posterior from every module it has
// caught up with: it, not a publisher's rate, sets the pace. Rates are the
// integrator's own counters over Duration per cell, measured in slices of
// at most 0.5 s (each with a fresh integrator and modules and a short
// warm-up) taken round-robin over the cells, so that a change in the
// machine's load falls on every cell alike. A least-squares fit of the time
// per belief and per posterior against the number of modules and the
// latent size (Growth) says how the cost grows per doubling of each.
package fusionbench
