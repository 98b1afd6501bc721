// Package launch owns the pipeline file and the module processes that
// `serket up` starts from it: parsing and validating the file, resolving it
// into process specs, and a Supervisor that starts the integrator and every
// module as child processes, copies their output, restarts them according
// to their restart policies and stops them gracefully. It knows nothing of
// NATS beyond the settings it reads from the file. What it tells a child
// through the environment is the contract of package procenv, whose names
// it uses.
//
// A pipeline file looks like this (every field is optional except modules;
// the values shown are the defaults):
//
//	pipeline: default        # namespace name, ^[a-z][a-z0-9-]{0,31}$
//	latent: 64               # shared latent size, 1..4096 (default 64)
//	nats:
//	  url: ""                # existing server; empty starts an embedded one
//	  port: 4222             # embedded server port, 0 for a random one
//	  jetstream: false
//	  store_dir: ""          # JetStream store (default: a temporary directory)
//	integrator:
//	  command: [serket, integrator]
//	  restart: {policy: always}
//	  startup: 0s            # no start-up check (it does not say it is ready)
//	modules:                 # at most 64 (bus.MaxModules)
//	  - name: left           # same rule as pipeline, unique, not "integrator"
//	    command: [serket, module, toy]   # default [serket, module, <name>]
//	    args: [--dim, "8"]
//	    env: {KEY: value}
//	    dir: ""              # working directory
//	    restart:
//	      policy: on-failure # never, on-failure or always
//	      backoff: 200ms     # first restart delay, doubling on each restart
//	      max_backoff: 10s   # cap of the delay
//	      max_restarts: 0    # consecutive restarts before giving up, 0: no limit
//	    startup: 5s          # start-up window, 0: no start-up check
//
// "serket" as argv[0] of a command stands for the running serket binary.
//
// Start-up: a process is starting up from its first start until it says it
// is ready (procenv.NotifyReady, through the descriptor named by
// $SERKET_READY_FD; a module that joins through module.Flags, serket's own
// included, does once it serves on the bus, and serket's integrator too)
// or has run for its start-up window, whichever comes first. A process that exits during its
// start-up, whatever its exit status, 0 included, is a pipeline that
// failed to start: the supervisor stops every process and reports the
// process, its exit status and its last lines of output (StartupError).
// After start-up an exit is its restart policy's to handle.
//
// The file is held to what the processes and the wire can take: at most
// bus.MaxModules modules (a message names at most that many), a batch of
// at most bus.MaxBatch rows and bus.MaxElements numbers per tensor, plans of
// at most bus.MaxTerms terms, and arguments and environment entries the
// system can pass to a program (no NUL, at most 128 KiB each).
// Unknown fields are errors, and every error wraps ErrInvalidPipeline and
// names the file and the line or field path at fault.
//
// The supervisor is for Unix systems; its parent-death protection is Linux
// only.
package launch
