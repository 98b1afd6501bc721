// Package loadbench drives a running pipeline's inference service from many
// concurrent clients and accounts for every request it sends.
//
// Run sends the requests of Config.Requests (observations by module, the
// same modules in each, and the modules to decode, Config.Want) from
// Config.Clients goroutines sharing Config.Conns NATS connections, each with
// one request in flight, for a warm-up that is not counted and then for the
// measured window. Every request is replied ok (the reply decodes, every
// observed module contributed, every wanted module rendered one output, and
// the fused mean is the one this request gave before, so that a crossed
// reply is caught), answered with an error (counted by kind) or lost (no
// reply within Config.Timeout). Result.Check fails a run that lost a request
// or whose counts do not add up, and, when the pipeline is the run's own
// (Config.Owned), one whose integrator counted other than what was sent.
//
// With Config.Baseline the same clients on the same connections then
// measure a raw NATS request-reply echo of the mean request's size
// (bench.Echo), and Result.P50Ratio sets the two medians side by side.
//
// The package knows no modality: the caller gives the observations (the
// CLI's serket bench load reads them from the prepared dataset, from files
// or from its flags) and starts the pipeline, or points at a running one.
package loadbench
