// Package fmnist3 is serket's built-in model in one process: the vision,
// language and audio modules over a prepared Fashion-MNIST-3 dataset, with
// their checkpoints (<dir>/<module>.ckpt) saved and restored together, and
// served as a pipeline on a NATS server (Serve) exactly as their processes
// would serve them.
//
// Tests, the robot example and the benchmarks that compare serket with the
// PyTorch reference (bench/torchref) build the model with it. Nothing that
// works for any pipeline uses it: serket eval, generate and bench load
// reach modules over the bus, whatever they are.
package fmnist3
