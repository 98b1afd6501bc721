package launch

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"mime"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/serket-go/serket/aggregate"
	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/procenv"
)

// ErrInvalidPipeline is wrapped by every error that Parse, Load and Validate
// return for a pipeline file that cannot be used: YAML syntax errors, unknown
// fields and failed validations alike.
var ErrInvalidPipeline = errors.New("launch: invalid pipeline")

// Defaults applied by Parse to fields that are absent from the file.
const (
	defaultPipelineName = "default"
	defaultLatent       = 64
	defaultNATSPort     = 4222
	defaultBackoff      = Duration(200 * time.Millisecond)
	defaultMaxBackoff   = Duration(10 * time.Second)
	// defaultStartup is a process's start-up window: as long as a run must
	// last to reset the restart backoff, the other measure of "started".
	defaultStartup = Duration(minStable)
	// integratorStartup is the integrator's: the same. serket's says when
	// it is ready (it serves and, training, has begun), so a training
	// integrator that exits by design when a short run is over is not
	// taken for one that failed to start.
	integratorStartup = defaultStartup
	maxLatent         = 4096
	// integratorName is the process name of the integrator; no module may use it.
	integratorName = "integrator"
	// selfCommand, as argv[0] of a command, stands for the running serket
	// binary (the self argument of Pipeline.Specs).
	selfCommand = "serket"
)

// nameRule is bus.ValidName's rule for pipeline and module names, as
// error messages show it.
const nameRule = `^[a-z][a-z0-9-]{0,31}$`

// Limits of what the kernel passes to a program (Linux): one argument or
// environment entry ("KEY=value") of at most maxArgBytes (MAX_ARG_STRLEN,
// 32 pages, with its NUL), and all of them together at most ARG_MAX,
// usually 2 MiB; a process's share from the file is bounded by
// maxProcessArgBytes so that the inherited environment keeps the rest.
// Past them the process cannot be started at all.
const (
	maxArgBytes        = 128<<10 - 1
	maxProcessArgBytes = 1 << 20
)

// Pipeline is a parsed pipeline file: the namespace, the shared latent size,
// how to reach NATS, the integrator and the modality modules to run.
type Pipeline struct {
	// Name is the pipeline (namespace) name, YAML key "pipeline".
	Name string `yaml:"pipeline"`
	// Latent is the latent vector size shared by all modules.
	Latent int `yaml:"latent"`
	// NATS says which NATS server to use or how to start an embedded one.
	NATS NATSConfig `yaml:"nats"`
	// Integrator is the integrator process; Parse always sets it (its name
	// is forced to "integrator"). Specs skips it when nil.
	Integrator *Process `yaml:"integrator,omitempty"`
	// Modules are the modality module processes, at least one.
	Modules []Process `yaml:"modules"`
	// Prior is the pipeline's prior module, if any (SERKET's concept
	// formation: name concept, command by default serket module concept):
	// it sees no modality, and gives the shared latent its prior.
	Prior *Process `yaml:"prior,omitempty"`
	// Train holds the training settings `serket train` starts from (its
	// flags override them); nil when the file has no train section.
	Train *TrainSettings `yaml:"train,omitempty"`
	// Fusion sets streaming fusion; nil: the integrator's defaults.
	Fusion *FusionSettings `yaml:"fusion,omitempty"`
	// Labels is a file of the items' classes and splits, for evaluation
	// (which the modules never see; see eval.Labels), relative to the
	// file's directory; empty: the dataset's manifest.
	Labels string `yaml:"labels,omitempty"`
	// Data is the prepared dataset directory the built-in modules read
	// ($SERKET_DATA, which wins over it), relative to the file's
	// directory; empty: data/fmnist3 of the working directory.
	Data string `yaml:"data,omitempty"`

	// Base is the directory relative command paths and working
	// directories are taken from: Load sets it to the file's directory, so
	// a pipeline file works from wherever serket runs. Empty means the
	// supervisor's working directory.
	Base string `yaml:"-"`
}

// TrainSettings is the "train" section of a pipeline file. Zero values
// mean "the command's default".
type TrainSettings struct {
	Epochs      int                `yaml:"epochs,omitempty"`
	Batch       int                `yaml:"batch,omitempty"`
	Seed        uint64             `yaml:"seed,omitempty"`
	Plan        string             `yaml:"plan,omitempty"`        // mvae, cross or joint
	Subsets     int                `yaml:"subsets,omitempty"`     // random subsets per step
	Aggregation string             `yaml:"aggregation,omitempty"` // poe, moe, mopoe or gpoe
	Lambda      map[string]float64 `yaml:"lambda,omitempty"`      // module → weight of its log-likelihood
	// Freeze are trained modules that take part without learning, while
	// the others train against them (coordinated training of a new
	// module): their checkpoints must be in the checkpoint directory.
	Freeze          []string `yaml:"freeze,omitempty"`
	KLFrom          *float64 `yaml:"kl_from,omitempty"`
	KLTo            *float64 `yaml:"kl_to,omitempty"`
	KLAnneal        *float64 `yaml:"kl_anneal,omitempty"`     // epochs of linear annealing
	StepDeadline    Duration `yaml:"step_deadline,omitempty"` // how long a step waits for each module
	CheckpointDir   string   `yaml:"checkpoint_dir,omitempty"`
	CheckpointEvery *int     `yaml:"checkpoint_every,omitempty"`
	// CheckpointInterval takes a checkpoint when this long has passed
	// since the last, whatever the step count (0: not by time).
	CheckpointInterval *Duration `yaml:"checkpoint_interval,omitempty"`
	Limit              int       `yaml:"limit,omitempty"`      // first N training items
	EvalItems          *int      `yaml:"eval_items,omitempty"` // first N test items scored after every epoch
	// PairedFraction is the fraction of training items that keep every
	// modality (the rest keep one each); the modules draw the mask
	// themselves from it and PairingSeed.
	PairedFraction *float64 `yaml:"paired_fraction,omitempty"`
	// LR is every module's Adam learning rate, unless its args say otherwise.
	LR          *float64 `yaml:"lr,omitempty"`
	PairingSeed uint64   `yaml:"pairing_seed,omitempty"`
	// PairedShare is the share of every batch drawn from the paired
	// items (0: batches drawn uniformly); SeenOnly has a term score no
	// item its subset did not see (integrator.Pairing).
	PairedShare *float64 `yaml:"paired_share,omitempty"`
	SeenOnly    *bool    `yaml:"seen_only,omitempty"`
}

// NATSConfig is the "nats" section of a pipeline file.
type NATSConfig struct {
	// URL of an existing NATS server; empty means start an embedded one.
	URL string `yaml:"url"`
	// Port of the embedded server; 0 picks a random free port.
	Port int `yaml:"port"`
	// JetStream enables JetStream on the embedded server.
	JetStream bool `yaml:"jetstream"`
	// StoreDir is the JetStream store directory, relative to the file's
	// directory (see Path); empty means a temporary directory chosen by
	// whoever starts the server.
	StoreDir string `yaml:"store_dir"`
}

// Process describes one child process of the pipeline: a module or the
// integrator.
type Process struct {
	// Name identifies the process in logs, events and on NATS.
	Name string `yaml:"name,omitempty"`
	// Command is the argv prefix; "serket" as argv[0] means the running
	// serket binary. Default: [serket, module, <name>] for modules and
	// [serket, integrator] for the integrator. A relative argv[0] with a
	// slash (./bin/touch) is taken from the pipeline's Base; a bare name
	// is looked up in PATH.
	Command []string `yaml:"command,omitempty"`
	// Args are appended after Command.
	Args []string `yaml:"args,omitempty"`
	// Exec, for a module in another language, is its program and the
	// program's arguments: the module runs as `serket module exec ARGS
	// -- EXEC…` (docs/foreign.md), in place of a Command, and the program
	// in the pipeline file's directory, so that relative paths in it are
	// taken from there as every path of the file is.
	Exec []string `yaml:"exec,omitempty"`
	// Env holds extra environment variables, added after the inherited ones.
	Env map[string]string `yaml:"env,omitempty"`
	// Dir is the working directory, relative to the pipeline's Base; empty
	// means the supervisor's.
	Dir string `yaml:"dir,omitempty"`
	// Restart says when and how fast the process is restarted.
	Restart RestartPolicy `yaml:"restart"`
	// Startup is the process's start-up window (Spec.Startup): until it
	// says it is ready (serket's modules do once they serve) or has run
	// this long, an exit of the process, whatever its status, is a
	// pipeline that failed to start. Default 5s (see integratorStartup);
	// 0 turns the check off, for a process that is meant to exit soon
	// and says nothing.
	Startup *Duration `yaml:"startup,omitempty"`

	// Sensors are NATS subjects whose messages the module streams as
	// observations (streaming fusion); SensorType is their media type when
	// a message has no Content-Type header; Rate caps the posteriors it
	// publishes per second (0: as fast as it encodes); SayBeliefs has it
	// render the fused beliefs. They reach the process as SERKET_SENSORS
	// (comma-separated), SERKET_SENSOR_TYPE, SERKET_SENSOR_RATE and
	// SERKET_SAY_BELIEFS=1, which serket's modules take as flag defaults.
	Sensors    []string `yaml:"sensors,omitempty"`
	SensorType string   `yaml:"sensor_type,omitempty"`
	Rate       float64  `yaml:"rate,omitempty"`
	SayBeliefs bool     `yaml:"say_beliefs,omitempty"`
}

// FusionSettings is the "fusion" section of a pipeline file: streaming
// fusion in the integrator (SERKET_SLOP, SERKET_MAX_AHEAD and
// SERKET_BELIEF_PERIOD in its environment).
type FusionSettings struct {
	Slop         Duration `yaml:"slop,omitempty"`          // how old a posterior may be to join a belief
	MaxAhead     Duration `yaml:"max_ahead,omitempty"`     // tolerated clock skew
	BeliefPeriod Duration `yaml:"belief_period,omitempty"` // at most one belief per period
}

// RestartPolicy says when a process that exited is started again, and how
// long to wait before doing so.
type RestartPolicy struct {
	// Policy is never, on-failure or always. Default: on-failure for
	// modules, always for the integrator.
	Policy Policy `yaml:"policy"`
	// Backoff is the delay before the first restart; it doubles on each
	// further consecutive restart. Default 200ms (zero means the default).
	Backoff Duration `yaml:"backoff"`
	// MaxBackoff caps the doubling delay. Default 10s, or Backoff if that is
	// larger (zero means the default).
	MaxBackoff Duration `yaml:"max_backoff"`
	// MaxRestarts is how many consecutive restarts are allowed before the
	// supervisor gives up on the process; 0 means unlimited.
	MaxRestarts int `yaml:"max_restarts"`
}

// Policy is a restart policy name.
type Policy string

// The restart policies.
const (
	// Never leaves a process dead once it has exited.
	Never Policy = "never"
	// OnFailure restarts a process after a non-zero exit status or a death
	// by a signal that the supervisor did not send.
	OnFailure Policy = "on-failure"
	// Always restarts a process after any exit.
	Always Policy = "always"
)

func (p Policy) valid() bool { return p == Never || p == OnFailure || p == Always }

// Duration is a time.Duration written in YAML the way time.ParseDuration
// reads it ("200ms", "10s", "1m30s") and marshalled back the same way.
type Duration time.Duration

// String returns the duration as time.Duration formats it.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML writes the duration as a string such as "200ms".
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a duration string such as "200ms" or "10s"; a bare 0
// is accepted too.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf(
			"line %d: a duration must be a string such as 200ms or 10s", n.Line)}}
	}
	v, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf(
			"line %d: invalid duration %q (want a number with a unit, such as 200ms or 10s)", n.Line, n.Value)}}
	}
	*d = Duration(v)
	return nil
}

// Default returns the built-in pipeline used when no pipeline file is
// given: pipeline "default", latent 16, an embedded NATS server on port 4222,
// the default integrator and the built-in modules (see defaultModules). It
// is valid and has every default filled in.
func Default() *Pipeline {
	p := &Pipeline{
		Name:    defaultPipelineName,
		Latent:  defaultLatent,
		NATS:    NATSConfig{Port: defaultNATSPort},
		Modules: defaultModules(),
	}
	p.applyDefaults()
	return p
}

// defaultModules lists the modules of the default pipeline: the three
// Fashion-MNIST-3 modalities, each `serket module <name>`.
func defaultModules() []Process {
	return []Process{{Name: "vision"}, {Name: "language"}, {Name: "audio"}}
}

// MaxPipelineBytes bounds a pipeline file. A hand-written one is a few
// kilobytes; the bound keeps a wrong path (a log, /dev/zero) from being read
// whole and parsed.
const MaxPipelineBytes = 1 << 20

// maxMappingKeys bounds the keys of one YAML mapping (an env, a lambda): the
// YAML decoder compares every pair of keys of a mapping.
const maxMappingKeys = 1000

// Load reads and parses the pipeline file at path (see Parse). An unreadable
// or missing file gives an error naming the path; one larger than
// MaxPipelineBytes is refused without reading it all.
func Load(path string) (*Pipeline, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("launch: read pipeline file: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxPipelineBytes+1))
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("launch: read pipeline file: %w", err)
	}
	p, err := Parse(data, path)
	if err != nil {
		return nil, err
	}
	if p.Base, err = filepath.Abs(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("launch: pipeline file %s: %w", path, err)
	}
	return p, nil
}

// Parse reads a pipeline file strictly (unknown fields are errors), fills in
// the defaults of absent fields and validates the result. source names the
// file in error messages. Data over MaxPipelineBytes, a mapping with more
// than a thousand keys or a key twice is refused before decoding. Every
// error wraps ErrInvalidPipeline and names the source and the line or field
// path at fault.
func Parse(data []byte, source string) (*Pipeline, error) {
	if source == "" {
		source = "<pipeline>"
	}
	if len(data) > MaxPipelineBytes {
		return nil, fmt.Errorf("%w: %s: larger than %d MiB; a pipeline file is a few kilobytes of YAML", ErrInvalidPipeline, source, MaxPipelineBytes>>20)
	}
	if err := checkMappings(data); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidPipeline, source, err)
	}
	// Top-level defaults are set before decoding so that an explicit zero
	// (latent: 0, port: 0) can be told apart from an absent field.
	p := &Pipeline{
		Name:   defaultPipelineName,
		Latent: defaultLatent,
		NATS:   NATSConfig{Port: defaultNATSPort},
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(p); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidPipeline, source, plainYAMLError(err))
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidPipeline, source, err)
	default:
		return nil, fmt.Errorf("%w: %s: line %d: a pipeline file holds a single YAML document", ErrInvalidPipeline, source, extra.Line)
	}
	p.applyDefaults()
	if err := p.validate(source); err != nil {
		return nil, err
	}
	return p, nil
}

// checkMappings refuses the first document's mappings that go.yaml.in/yaml/v3
// would take quadratic time and memory on: its check for duplicate keys
// compares every pair of keys and records an error per duplicate pair, so
// 40 kB of one repeated key take seconds and gigabytes. Here duplicates are
// found with a set and reported as the decoder would, and a mapping may
// have at most maxMappingKeys keys. Syntax errors are left to the decoder.
func checkMappings(data []byte) error {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		return nil
	}
	var walk func(n *yaml.Node) error
	walk = func(n *yaml.Node) error {
		if n.Kind == yaml.MappingNode {
			if len(n.Content)/2 > maxMappingKeys {
				return fmt.Errorf("line %d: a mapping of %d keys (at most %d)", n.Line, len(n.Content)/2, maxMappingKeys)
			}
			type key struct {
				kind  yaml.Kind
				value string
			}
			seen := make(map[key]int, len(n.Content)/2)
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				if line, dup := seen[key{k.Kind, k.Value}]; dup {
					return fmt.Errorf("line %d: mapping key %q already defined at line %d", k.Line, k.Value, line)
				}
				seen[key{k.Kind, k.Value}] = k.Line
			}
		}
		for _, c := range n.Content {
			if err := walk(c); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(&doc)
}

// applyDefaults fills in the zero-valued fields that have a default.
func (p *Pipeline) applyDefaults() {
	if p.Integrator == nil {
		p.Integrator = &Process{}
	}
	if p.Integrator.Name == "" {
		p.Integrator.Name = integratorName
	}
	p.Integrator.applyDefaults([]string{selfCommand, "integrator"}, Always, integratorStartup)
	for i := range p.Modules {
		m := &p.Modules[i]
		m.applyDefaults([]string{selfCommand, "module", m.Name}, OnFailure, defaultStartup)
	}
	if p.Prior != nil {
		p.Prior.applyDefaults([]string{selfCommand, "module", p.Prior.Name}, OnFailure, defaultStartup)
	}
}

func (pr *Process) applyDefaults(command []string, policy Policy, startup Duration) {
	if len(pr.Command) == 0 && len(pr.Exec) > 0 {
		command = execCommand
	}
	if len(pr.Command) == 0 {
		pr.Command = command
	}
	pr.Restart = pr.Restart.withDefaults(policy)
	if pr.Startup == nil {
		pr.Startup = &startup
	}
}

// withDefaults returns r with zero fields replaced by their defaults.
// Negative values are kept so that validation can report them.
func (r RestartPolicy) withDefaults(policy Policy) RestartPolicy {
	if r.Policy == "" {
		r.Policy = policy
	}
	if r.Backoff == 0 {
		r.Backoff = defaultBackoff
	}
	if r.MaxBackoff == 0 {
		r.MaxBackoff = max(defaultMaxBackoff, r.Backoff)
	}
	return r
}

// Validate checks the pipeline and returns nil or every problem found,
// joined; each one wraps ErrInvalidPipeline and names its field path
// (pipeline, latent, nats.port, modules[1].restart.policy, ...). Validate
// does not fill defaults: a Pipeline built in code must set every field
// (Default and Parse return complete pipelines).
func (p *Pipeline) Validate() error { return p.validate("") }

func (p *Pipeline) validate(source string) error {
	v := &validator{source: source}
	if !bus.ValidName(p.Name) {
		v.add("pipeline", "invalid name %q (want %s)", p.Name, nameRule)
	}
	if p.Latent < 1 || p.Latent > maxLatent {
		v.add("latent", "%d is out of range (want 1..%d)", p.Latent, maxLatent)
	}
	if p.NATS.Port < 0 || p.NATS.Port > 65535 {
		v.add("nats.port", "%d is out of range (want 0..65535, 0 for a random port)", p.NATS.Port)
	}
	if strings.ContainsAny(p.NATS.URL, " \t\r\n") {
		v.add("nats.url", "%q contains white space", p.NATS.URL)
	}
	if p.Integrator != nil {
		if p.Integrator.Name != integratorName {
			v.add("integrator.name", "must be empty or %q, got %q", integratorName, p.Integrator.Name)
		}
		v.process("integrator", p.Integrator)
		v.noExec("integrator", p.Integrator)
	}
	switch n := len(p.Modules); {
	case n == 0:
		v.add("modules", "at least one module is needed")
	case n > bus.MaxModules:
		// Inference requests, replies and beliefs name at most MaxModules
		// modules, and training steps weigh at most that many: a larger
		// pipeline would start, then have its messages refused.
		v.add("modules", "%d modules, at most %d (the most one message names)", n, bus.MaxModules)
	}
	seen := make(map[string]int, len(p.Modules))
	for i := range p.Modules {
		m := &p.Modules[i]
		path := fmt.Sprintf("modules[%d]", i)
		switch first, dup := seen[m.Name]; {
		case !bus.ValidName(m.Name):
			v.add(path+".name", "invalid name %q (want %s)", m.Name, nameRule)
		case m.Name == integratorName:
			v.add(path+".name", "%q is reserved for the integrator", m.Name)
		case dup:
			v.add(path+".name", "duplicate name %q (already used by modules[%d])", m.Name, first)
		default:
			seen[m.Name] = i
		}
		v.process(path, m)
		v.streaming(path, m)
	}
	if m := p.Prior; m != nil {
		_, dup := seen[m.Name]
		switch {
		case !bus.ValidName(m.Name):
			v.add("prior.name", "invalid name %q (want %s)", m.Name, nameRule)
		case m.Name == integratorName || dup:
			v.add("prior.name", "%q is the integrator's or a module's name", m.Name)
		}
		v.process("prior", m)
		v.noExec("prior", m)
	}
	if f := p.Fusion; f != nil {
		for _, d := range []struct {
			name string
			v    Duration
		}{{"slop", f.Slop}, {"max_ahead", f.MaxAhead}, {"belief_period", f.BeliefPeriod}} {
			if d.v < 0 {
				v.add("fusion."+d.name, "%v: want a positive duration", time.Duration(d.v))
			}
		}
	}
	if p.Train != nil {
		v.train(p.Train, p.Latent, seen)
	}
	return errors.Join(v.errs...)
}

type validator struct {
	source string
	errs   []error
}

// streaming checks a module's streaming settings, which reach it through
// its environment (see Specs).
func (v *validator) streaming(path string, m *Process) {
	for k, subj := range m.Sensors {
		if err := checkSensor(subj); err != nil {
			v.add(fmt.Sprintf("%s.sensors[%d]", path, k), "%q %v", subj, err)
		}
	}
	if n := len(envSensors) + len(strings.Join(m.Sensors, ",")); n > maxArgBytes {
		v.add(path+".sensors", "%d bytes together, at most %d: they reach the module as one environment variable", n, maxArgBytes)
	}
	if m.SensorType != "" {
		// mime also takes a disposition ("attachment"): want type/subtype.
		if mt, _, err := mime.ParseMediaType(m.SensorType); err != nil || !strings.Contains(mt, "/") || len(m.SensorType) > 255 {
			v.add(path+".sensor_type", "%q is not a media type (want one such as image/png, audio/wav or text/plain)", m.SensorType)
		}
	}
	if !(m.Rate >= 0) || math.IsInf(m.Rate, 1) {
		v.add(path+".rate", "%v: want 0 (unlimited) or a finite number of posteriors per second", m.Rate)
	}
}

// train checks the train section against the modules (by name) and the
// limits of the step messages it makes.
func (v *validator) train(t *TrainSettings, latent int, modules map[string]int) {
	if t.Epochs < 0 {
		v.add("train.epochs", "%d: want a positive number", t.Epochs)
	}
	switch {
	case t.Batch < 0 || t.Batch > bus.MaxBatch:
		v.add("train.batch", "%d: want 1..%d", t.Batch, bus.MaxBatch)
	case latent > 0 && latent <= maxLatent && t.Batch*latent > bus.MaxElements:
		// A step's posteriors and latents are batch × latent tensors.
		v.add("train.batch", "%d rows of a %d-wide latent make tensors of %d numbers, at most %d a message carries: want a batch of at most %d",
			t.Batch, latent, t.Batch*latent, bus.MaxElements, bus.MaxElements/latent)
	}
	switch t.Plan {
	case "", "mvae", "cross":
		// The joint term, one per module, and the random subsets.
		if terms := 1 + len(modules) + t.Subsets; len(modules) > 1 && terms > bus.MaxTerms {
			v.add("train.subsets", "%d: a step's plan would have 1 + %d + %d = %d terms, at most %d: want at most %d subsets",
				t.Subsets, len(modules), t.Subsets, terms, bus.MaxTerms, bus.MaxTerms-1-len(modules))
		}
	case "joint":
	default:
		v.add("train.plan", "unknown plan %q (want mvae, cross or joint)", t.Plan)
	}
	if t.Subsets < 0 {
		v.add("train.subsets", "%d: want 0 or more", t.Subsets)
	}
	if _, err := aggregate.Parse(t.Aggregation); err != nil {
		v.add("train.aggregation", "%v", err)
	}
	for i, name := range t.Freeze {
		if _, ok := modules[name]; !ok {
			v.add(fmt.Sprintf("train.freeze[%d]", i), "no module named %q in this pipeline", name)
		}
	}
	if len(t.Freeze) > 0 && len(t.Freeze) >= len(modules) {
		v.add("train.freeze", "every module is frozen: nothing would learn")
	}
	for _, name := range slices.Sorted(maps.Keys(t.Lambda)) {
		if _, ok := modules[name]; !ok {
			v.add("train.lambda."+name, "no module named %q in this pipeline", name)
		} else if w := t.Lambda[name]; !(w >= 0) || math.IsInf(w, 1) {
			v.add("train.lambda."+name, "%v: want a finite non-negative number", w)
		}
	}
	for _, f := range []struct {
		name string
		v    *float64
	}{{"kl_from", t.KLFrom}, {"kl_to", t.KLTo}, {"kl_anneal", t.KLAnneal}} {
		if f.v != nil && (!(*f.v >= 0) || math.IsInf(*f.v, 1)) {
			v.add("train."+f.name, "%v: want a finite non-negative number", *f.v)
		}
	}
	if t.StepDeadline < 0 {
		v.add("train.step_deadline", "%v: want a positive duration", t.StepDeadline)
	}
	if t.CheckpointInterval != nil && *t.CheckpointInterval < 0 {
		v.add("train.checkpoint_interval", "%v: want 0 (not by time) or more", time.Duration(*t.CheckpointInterval))
	}
	if t.CheckpointEvery != nil && *t.CheckpointEvery < 0 {
		v.add("train.checkpoint_every", "%d: want 0 (only at the end) or more", *t.CheckpointEvery)
	}
	if t.Limit < 0 {
		v.add("train.limit", "%d: want 0 (all) or more", t.Limit)
	}
	if t.EvalItems != nil && *t.EvalItems < 0 {
		v.add("train.eval_items", "%d: want 0 (none) or more", *t.EvalItems)
	}
	if t.LR != nil && (!(*t.LR > 0) || math.IsInf(*t.LR, 1)) {
		v.add("train.lr", "%v: want a finite positive learning rate", *t.LR)
	}
	if f := t.PairedFraction; f != nil && !(*f > 0 && *f <= 1) {
		v.add("train.paired_fraction", "%v: want a fraction in (0, 1]", *f)
	}
	if f := t.PairedShare; f != nil && !(*f >= 0 && *f < 1) {
		v.add("train.paired_share", "%v: want a share in [0, 1)", *f)
	}
}

func (v *validator) add(path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if v.source != "" {
		v.errs = append(v.errs, fmt.Errorf("%w: %s: %s: %s", ErrInvalidPipeline, v.source, path, msg))
	} else {
		v.errs = append(v.errs, fmt.Errorf("%w: %s: %s", ErrInvalidPipeline, path, msg))
	}
}

func (v *validator) process(path string, pr *Process) {
	if len(pr.Command) == 0 {
		v.add(path+".command", "must not be empty")
	} else if pr.Command[0] == "" {
		v.add(path+".command[0]", "the program must not be empty")
	}
	total := 0
	for i, a := range pr.Command {
		total += v.arg(fmt.Sprintf("%s.command[%d]", path, i), a)
	}
	if len(pr.Exec) > 0 {
		if !slices.Equal(pr.Command, execCommand) {
			v.add(path+".exec", "runs the program under serket module exec: give command or exec, not both")
		}
		if pr.Exec[0] == "" {
			v.add(path+".exec[0]", "the program must not be empty")
		}
		for i, a := range pr.Exec {
			total += v.arg(fmt.Sprintf("%s.exec[%d]", path, i), a)
		}
	}
	for i, a := range pr.Args {
		total += v.arg(fmt.Sprintf("%s.args[%d]", path, i), a)
	}
	if strings.ContainsRune(pr.Dir, 0) {
		v.add(path+".dir", "contains a NUL byte")
	}
	for _, k := range slices.Sorted(maps.Keys(pr.Env)) {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			v.add(path+".env", "invalid variable name %q (must be non-empty, without '=')", k)
		}
		if strings.ContainsRune(pr.Env[k], 0) {
			v.add(path+".env."+k, "value contains a NUL byte")
		}
		if n := len(k) + 1 + len(pr.Env[k]); n > maxArgBytes {
			v.add(path+".env."+k, "%d bytes, at most %d: the system passes no longer variable to a program", n, maxArgBytes)
		}
		total += len(k) + len(pr.Env[k]) + 2
	}
	if total > maxProcessArgBytes {
		v.add(path, "its command, args and env come to %d bytes, at most %d: the system could not start it", total, maxProcessArgBytes)
	}
	r := pr.Restart
	rpath := path + ".restart"
	if !r.Policy.valid() {
		v.add(rpath+".policy", "unknown policy %q (want never, on-failure or always)", r.Policy)
	}
	if r.Backoff <= 0 {
		v.add(rpath+".backoff", "%s is not positive (want a duration > 0, such as 200ms)", r.Backoff)
	}
	if r.MaxBackoff < r.Backoff {
		v.add(rpath+".max_backoff", "%s is less than backoff %s (want >= backoff)", r.MaxBackoff, r.Backoff)
	}
	if r.MaxRestarts < 0 {
		v.add(rpath+".max_restarts", "%d is negative (want >= 0, 0 for unlimited)", r.MaxRestarts)
	}
	if pr.Startup != nil && *pr.Startup < 0 {
		v.add(path+".startup", "%s is negative (want a duration such as 5s, or 0 for no start-up check)", *pr.Startup)
	}
}

// Specs resolves the pipeline into process specs for a Supervisor: the
// integrator first (when set), then the modules in file order. self is the
// path of the running serket binary and replaces an argv[0] of "serket"
// (when self is empty, "serket" is looked up in PATH). Each spec's
// arguments are the rest of Command followed by Args; its environment is
// os.Environ(), then extraEnv, then the process's Env in sorted key order
// (later entries win).
func (p *Pipeline) Specs(self string, extraEnv []string) []Spec {
	base := append(os.Environ(), extraEnv...)
	specs := make([]Spec, 0, len(p.Modules)+1)
	if p.Integrator != nil {
		in := *p.Integrator
		if in.Name == "" {
			in.Name = integratorName
		}
		in.applyDefaults([]string{selfCommand, "integrator"}, Always, integratorStartup)
		specs = append(specs, in.spec(self, p.Base, base))
	}
	for _, m := range p.Modules {
		m.applyDefaults([]string{selfCommand, "module", m.Name}, OnFailure, defaultStartup)
		sp := m.spec(self, p.Base, base)
		if len(m.Sensors) > 0 {
			sp.Env = append(sp.Env, envSensors+strings.Join(m.Sensors, ","))
		}
		if m.SensorType != "" {
			sp.Env = append(sp.Env, procenv.EnvSensorType+"="+m.SensorType)
		}
		if m.Rate > 0 {
			sp.Env = append(sp.Env, fmt.Sprintf("%s=%g", procenv.EnvSensorRate, m.Rate))
		}
		if m.SayBeliefs {
			sp.Env = append(sp.Env, procenv.EnvSayBeliefs+"=1")
		}
		specs = append(specs, sp)
	}
	if p.Prior != nil {
		m := *p.Prior
		m.applyDefaults([]string{selfCommand, "module", m.Name}, OnFailure, defaultStartup)
		specs = append(specs, m.spec(self, p.Base, base))
	}
	if f := p.Fusion; f != nil && len(specs) > 0 && p.Integrator != nil {
		for _, kv := range []struct {
			k string
			v Duration
		}{{procenv.EnvSlop, f.Slop}, {procenv.EnvMaxAhead, f.MaxAhead}, {procenv.EnvBeliefPeriod, f.BeliefPeriod}} {
			if kv.v > 0 {
				specs[0].Env = append(specs[0].Env, kv.k+"="+time.Duration(kv.v).String())
			}
		}
	}
	return specs
}

// arg checks one argument of a program and returns its size in argv.
func (v *validator) arg(path, a string) int {
	if strings.ContainsRune(a, 0) {
		v.add(path, "contains a NUL byte, which no program argument can hold")
	}
	if len(a) > maxArgBytes {
		v.add(path, "%d bytes, at most %d: the system passes no longer argument to a program", len(a), maxArgBytes)
	}
	return len(a) + 1
}

// envSensors is the environment entry that carries a module's sensors.
const envSensors = procenv.EnvSensors + "="

// checkSensor says why s is not a NATS subject a module can subscribe to
// as a sensor, or returns nil: non-empty dot-separated tokens without white
// space, ">" only as the last token (the server refuses it elsewhere), and
// no comma, which would split it in two in SERKET_SENSORS.
func checkSensor(s string) error {
	switch {
	case s == "":
		return errors.New("is empty: want a NATS subject such as robot.camera")
	case strings.ContainsAny(s, " \t\r\n\x00"):
		return errors.New("is not a NATS subject (dot-separated tokens, no spaces)")
	case strings.Contains(s, ","):
		return errors.New("contains a comma: sensors reach the module comma-separated")
	}
	toks := strings.Split(s, ".")
	for i, tok := range toks {
		switch {
		case tok == "":
			return errors.New("is not a NATS subject (dot-separated tokens, none empty)")
		case tok == ">" && i < len(toks)-1:
			return errors.New(`has ">" before its last token (it matches the rest of a subject, so it must end it)`)
		}
	}
	return nil
}

// execCommand is the Command of a module given by exec.
var execCommand = []string{selfCommand, "module", "exec"}

// noExec refuses exec for a process that is not a modality.
func (v *validator) noExec(path string, pr *Process) {
	if len(pr.Exec) > 0 {
		v.add(path+".exec", "only a module of the pipeline may be a program in another language")
	}
}

func (pr Process) spec(self, dir string, base []string) Spec {
	path := pr.Command[0]
	if path == selfCommand && self != "" {
		path = self
	}
	if strings.Contains(path, "/") && !filepath.IsAbs(path) && dir != "" {
		path = filepath.Join(dir, path)
	}
	wd := pr.Dir
	if wd != "" && !filepath.IsAbs(wd) && dir != "" {
		wd = filepath.Join(dir, wd)
	}
	args := make([]string, 0, len(pr.Command)-1+len(pr.Args))
	args = append(append(args, pr.Command[1:]...), pr.Args...)
	if len(pr.Exec) > 0 {
		if dir != "" {
			args = append(args, "--dir", dir)
		}
		args = append(append(args, "--"), pr.Exec...)
	}
	env := slices.Clone(base)
	for _, k := range slices.Sorted(maps.Keys(pr.Env)) {
		env = append(env, k+"="+pr.Env[k])
	}
	startup := defaultStartup
	if pr.Startup != nil {
		startup = *pr.Startup
	}
	return Spec{
		Name:    pr.Name,
		Path:    path,
		Args:    args,
		Env:     env,
		Dir:     wd,
		Restart: pr.Restart,
		Startup: time.Duration(startup),
	}
}
