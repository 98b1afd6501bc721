package launch_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/serket-go/serket/launch"
)

func ms(n int) launch.Duration { return launch.Duration(time.Duration(n) * time.Millisecond) }

// startup is a start-up window of n ms, as a Process holds it.
func startup(n int) *launch.Duration {
	d := ms(n)
	return &d
}

func TestDefaultRoundTrip(t *testing.T) {
	t.Parallel()
	def := launch.Default()
	if err := def.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	data, err := yaml.Marshal(def)
	if err != nil {
		t.Fatal(err)
	}
	got, err := launch.Parse(data, "default.yaml")
	if err != nil {
		t.Fatalf("Parse(marshalled default) = %v\n%s", err, data)
	}
	if !reflect.DeepEqual(got, def) {
		t.Errorf("round trip changed the default pipeline:\ngot  %+v\nwant %+v\nYAML:\n%s", got, def, data)
	}
	for _, want := range []string{"backoff: 200ms", "max_backoff: 10s", "policy: always", "policy: on-failure"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("marshalled default lacks %q:\n%s", want, data)
		}
	}
}

func TestDefault(t *testing.T) {
	t.Parallel()
	p := launch.Default()
	if p.Name != "default" || p.Latent != 64 || p.NATS != (launch.NATSConfig{Port: 4222}) {
		t.Errorf("Default() = %+v", p)
	}
	want := []string{"vision", "language", "audio"}
	if len(p.Modules) != len(want) {
		t.Fatalf("Default() has %d modules, want %d", len(p.Modules), len(want))
	}
	for i, w := range want {
		m := p.Modules[i]
		if m.Name != w || !slices.Equal(m.Command, []string{"serket", "module", w}) || len(m.Args) != 0 {
			t.Errorf("module %d = %+v, want %s run as serket module %s", i, m, w, w)
		}
	}
	if p.Integrator == nil || p.Integrator.Name != "integrator" || p.Integrator.Restart.Policy != launch.Always {
		t.Errorf("Default().Integrator = %+v", p.Integrator)
	}
}

const fullExample = `# every field
pipeline: robot-1
latent: 32
nats:
  url: nats://127.0.0.1:4333
  port: 0
  jetstream: true
  store_dir: /var/lib/serket
integrator:
  command: [serket, integrator]
  args: [--rate, "10"]
  env: {GOMAXPROCS: "2"}
  restart: {policy: on-failure, backoff: 1s, max_backoff: 1m, max_restarts: 3}
  startup: 20s
modules:
  - name: left
    command: [serket, module, toy]
    args: [--dim, "8"]
    env: {B: two, A: one}
    dir: /tmp
    restart:
      policy: on-failure
      backoff: 200ms
      max_backoff: 10s
      max_restarts: 0
  - name: camera-2
    command: [/usr/local/bin/camera, --fast]
    restart:
      policy: never
    startup: 0s
  - name: mic
`

func TestParseFullExample(t *testing.T) {
	t.Parallel()
	got, err := launch.Parse([]byte(fullExample), "full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &launch.Pipeline{
		Name:   "robot-1",
		Latent: 32,
		NATS:   launch.NATSConfig{URL: "nats://127.0.0.1:4333", Port: 0, JetStream: true, StoreDir: "/var/lib/serket"},
		Integrator: &launch.Process{
			Name:    "integrator",
			Command: []string{"serket", "integrator"},
			Args:    []string{"--rate", "10"},
			Env:     map[string]string{"GOMAXPROCS": "2"},
			Restart: launch.RestartPolicy{Policy: launch.OnFailure, Backoff: ms(1000), MaxBackoff: ms(60000), MaxRestarts: 3},
			Startup: startup(20000),
		},
		Modules: []launch.Process{
			{
				Name:    "left",
				Command: []string{"serket", "module", "toy"},
				Args:    []string{"--dim", "8"},
				Env:     map[string]string{"A": "one", "B": "two"},
				Dir:     "/tmp",
				Restart: launch.RestartPolicy{Policy: launch.OnFailure, Backoff: ms(200), MaxBackoff: ms(10000)},
				Startup: startup(5000),
			},
			{
				Name:    "camera-2",
				Command: []string{"/usr/local/bin/camera", "--fast"},
				Restart: launch.RestartPolicy{Policy: launch.Never, Backoff: ms(200), MaxBackoff: ms(10000)},
				Startup: startup(0),
			},
			{
				Name:    "mic",
				Command: []string{"serket", "module", "mic"},
				Restart: launch.RestartPolicy{Policy: launch.OnFailure, Backoff: ms(200), MaxBackoff: ms(10000)},
				Startup: startup(5000),
			},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse:\ngot  %+v\nwant %+v", got, want)
	}
}

func TestParseDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		want func(p *launch.Pipeline) bool
	}{
		{name: "top level", yaml: "modules: [{name: a}]", want: func(p *launch.Pipeline) bool {
			return p.Name == "default" && p.Latent == 64 && p.NATS == launch.NATSConfig{Port: 4222}
		}},
		{name: "integrator", yaml: "modules: [{name: a}]", want: func(p *launch.Pipeline) bool {
			return reflect.DeepEqual(p.Integrator, &launch.Process{
				Name:    "integrator",
				Command: []string{"serket", "integrator"},
				Restart: launch.RestartPolicy{Policy: launch.Always, Backoff: ms(200), MaxBackoff: ms(10000)},
				Startup: startup(5000),
			})
		}},
		{name: "module command", yaml: "modules: [{name: a}]", want: func(p *launch.Pipeline) bool {
			return slices.Equal(p.Modules[0].Command, []string{"serket", "module", "a"})
		}},
		{name: "explicit port 0 is kept", yaml: "nats: {port: 0}\nmodules: [{name: a}]", want: func(p *launch.Pipeline) bool {
			return p.NATS.Port == 0
		}},
		{name: "nats section keeps default port", yaml: "nats: {jetstream: true}\nmodules: [{name: a}]", want: func(p *launch.Pipeline) bool {
			return p.NATS.Port == 4222 && p.NATS.JetStream
		}},
		{name: "max_backoff follows a large backoff", yaml: "modules: [{name: a, restart: {backoff: 30s}}]", want: func(p *launch.Pipeline) bool {
			return p.Modules[0].Restart.MaxBackoff == ms(30000)
		}},
		{name: "integrator section merges defaults", yaml: "integrator: {args: [-v]}\nmodules: [{name: a}]", want: func(p *launch.Pipeline) bool {
			return p.Integrator.Name == "integrator" && slices.Equal(p.Integrator.Command, []string{"serket", "integrator"}) &&
				p.Integrator.Restart.Policy == launch.Always
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := launch.Parse([]byte(tt.yaml), "p.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if !tt.want(p) {
				t.Errorf("Parse(%q) = %+v (integrator %+v)", tt.yaml, p, p.Integrator)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		yaml    string
		wantErr []string // substrings of the error besides the source name
	}{
		{name: "bad pipeline name", yaml: "pipeline: Robot_1\nmodules: [{name: a}]", wantErr: []string{"pipeline: invalid name", "Robot_1"}},
		{name: "bad module name", yaml: "modules: [{name: a}, {name: 2cam}]", wantErr: []string{"modules[1].name", "2cam", "^[a-z]"}},
		{name: "module name too long", yaml: "modules: [{name: " + strings.Repeat("a", 33) + "}]", wantErr: []string{"modules[0].name"}},
		{name: "missing module name", yaml: "modules: [{args: [-v]}]", wantErr: []string{"modules[0].name"}},
		{name: "duplicate name", yaml: "modules: [{name: a}, {name: a}]", wantErr: []string{"modules[1].name", `duplicate name "a"`, "modules[0]"}},
		{name: "reserved name", yaml: "modules: [{name: integrator}]", wantErr: []string{"modules[0].name", "reserved"}},
		{name: "unknown policy", yaml: "modules: [{name: a}, {name: b, restart: {policy: sometimes}}]", wantErr: []string{"modules[1].restart.policy", `unknown policy "sometimes"`, "never, on-failure or always"}},
		{name: "negative backoff", yaml: "modules: [{name: a, restart: {backoff: -1s}}]", wantErr: []string{"modules[0].restart.backoff", "-1s"}},
		{name: "max_backoff below backoff", yaml: "modules: [{name: a, restart: {backoff: 2s, max_backoff: 1s}}]", wantErr: []string{"modules[0].restart.max_backoff", ">= backoff"}},
		{name: "negative max_restarts", yaml: "modules: [{name: a, restart: {max_restarts: -1}}]", wantErr: []string{"modules[0].restart.max_restarts"}},
		{name: "bad duration", yaml: "modules:\n  - name: a\n    restart: {backoff: fast}", wantErr: []string{"line 3", `invalid duration "fast"`}},
		{name: "duration without unit", yaml: "modules:\n  - name: a\n    restart: {backoff: 200}", wantErr: []string{"line 3", `invalid duration "200"`}},
		{name: "latent 0", yaml: "latent: 0\nmodules: [{name: a}]", wantErr: []string{"latent: 0", "1..4096"}},
		{name: "latent too large", yaml: "latent: 4097\nmodules: [{name: a}]", wantErr: []string{"latent: 4097"}},
		{name: "port 70000", yaml: "nats: {port: 70000}\nmodules: [{name: a}]", wantErr: []string{"nats.port", "70000", "0..65535"}},
		{name: "unknown field", yaml: "pipeline: p\nmodules:\n  - name: a\n    colour: red", wantErr: []string{"line 4", "colour"}},
		{name: "unknown top-level field", yaml: "pipline: p\nmodules: [{name: a}]", wantErr: []string{"line 1", "pipline"}},
		{name: "wrong type", yaml: "latent: many\nmodules: [{name: a}]", wantErr: []string{"line 1", "many"}},
		{name: "yaml syntax error", yaml: "modules:\n  - name: a\n   args: [x", wantErr: []string{"line "}},
		{name: "no modules", yaml: "pipeline: p", wantErr: []string{"modules: at least one module is needed"}},
		{name: "empty modules", yaml: "modules: []", wantErr: []string{"modules: at least one module is needed"}},
		{name: "empty file", yaml: "", wantErr: []string{"modules: at least one module is needed"}},
		{name: "empty program", yaml: `modules: [{name: a, command: [""]}]`, wantErr: []string{"modules[0].command[0]"}},
		{name: "bad env name", yaml: `modules: [{name: a, env: {"A=B": x}}]`, wantErr: []string{"modules[0].env", `"A=B"`}},
		{name: "integrator name", yaml: "integrator: {name: boss}\nmodules: [{name: a}]", wantErr: []string{"integrator.name", "boss"}},
		{name: "integrator policy", yaml: "integrator: {restart: {policy: maybe}}\nmodules: [{name: a}]", wantErr: []string{"integrator.restart.policy"}},
		{name: "two documents", yaml: "modules: [{name: a}]\n---\nmodules: [{name: b}]", wantErr: []string{"line 2", "single YAML document"}},
		{name: "negative startup", yaml: "modules: [{name: a, startup: -1s}]", wantErr: []string{"modules[0].startup", "-1s"}},
		{name: "integrator startup", yaml: "integrator: {startup: -2s}\nmodules: [{name: a}]", wantErr: []string{"integrator.startup"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := launch.Parse([]byte(tt.yaml), "bad.yaml")
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want an error", tt.yaml, p)
			}
			if !errors.Is(err, launch.ErrInvalidPipeline) {
				t.Errorf("error %q does not wrap ErrInvalidPipeline", err)
			}
			for _, want := range append([]string{"bad.yaml: "}, tt.wantErr...) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

// A pipeline file is held to what the wire and the system can carry: the
// file with 10,000 modules used to start 10,001 processes whose messages
// name at most 64 modules.
func TestParseRefusesWhatTheWireCannotCarry(t *testing.T) {
	t.Parallel()
	modules := func(n int) string {
		var b strings.Builder
		b.WriteString("modules:\n")
		for i := range n {
			fmt.Fprintf(&b, "  - {name: m%d, command: [serket, module, toy]}\n", i)
		}
		return b.String()
	}
	long := strings.Repeat("x", 128<<10)
	tests := []struct {
		name    string
		yaml    string
		wantErr []string // nil: valid
	}{
		{name: "64 modules", yaml: modules(64)},
		{name: "65 modules", yaml: modules(65), wantErr: []string{"modules: 65 modules, at most 64"}},
		{name: "10000 modules", yaml: modules(10000), wantErr: []string{"modules: 10000 modules, at most 64"}},
		{name: "NUL in an argument", yaml: `modules: [{name: a, args: [--dim, "8\0"]}]`, wantErr: []string{"modules[0].args[1]", "NUL"}},
		{name: "NUL in a command", yaml: `modules: [{name: a, command: ["serket\0"]}]`, wantErr: []string{"modules[0].command[0]", "NUL"}},
		{name: "argument past the system's limit", yaml: "modules: [{name: a, args: [" + long + "]}]", wantErr: []string{"modules[0].args[0]", "131072 bytes, at most 131071"}},
		{name: "environment entry past the system's limit", yaml: "modules: [{name: a, env: {K: " + long + "}}]", wantErr: []string{"modules[0].env.K"}},
		{name: "arguments multiplied by aliases", yaml: "modules: [{name: a, env: {K: &s " + long[:100<<10] + "}, args: [" + strings.Repeat("*s, ", 20) + "*s]}]",
			wantErr: []string{"modules[0]: its command, args and env come to", "at most 1048576"}},
		{name: "batch past a tensor", yaml: "latent: 4096\nmodules: [{name: a}]\ntrain: {batch: 8192}", wantErr: []string{"train.batch", "at most 4096"}},
		{name: "batch past a step", yaml: "modules: [{name: a}]\ntrain: {batch: 70000}", wantErr: []string{"train.batch", "1..65536"}},
		{name: "plan past a step", yaml: modules(60) + "train: {subsets: 200}", wantErr: []string{"train.subsets", "1 + 60 + 200 = 261 terms, at most 256", "at most 195 subsets"}},
		{name: "joint plan has one term", yaml: modules(60) + "train: {plan: joint, subsets: 200}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := launch.Parse([]byte(tt.yaml), "p.yaml")
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Parse = %v, want a valid pipeline", err)
				}
				return
			}
			if !errors.Is(err, launch.ErrInvalidPipeline) {
				t.Fatalf("Parse = %.300v, want an ErrInvalidPipeline", err)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %.300q does not say %q", err, want)
				}
			}
		})
	}
}

func TestParseReportsEveryError(t *testing.T) {
	t.Parallel()
	_, err := launch.Parse([]byte("latent: 0\nnats: {port: -1}\nmodules: [{name: A}]"), "bad.yaml")
	for _, want := range []string{"bad.yaml: latent", "bad.yaml: nats.port", "bad.yaml: modules[0].name"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not contain %q", err, want)
		}
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		edit    func(p *launch.Pipeline)
		wantErr string
	}{
		{name: "default is valid", edit: func(*launch.Pipeline) {}},
		{name: "latent", edit: func(p *launch.Pipeline) { p.Latent = -3 }, wantErr: "launch: invalid pipeline: latent: -3"},
		{name: "zero backoff", edit: func(p *launch.Pipeline) { p.Modules[2].Restart.Backoff = 0 }, wantErr: "modules[2].restart.backoff"},
		{name: "no command", edit: func(p *launch.Pipeline) { p.Modules[0].Command = nil }, wantErr: "modules[0].command"},
		{name: "no modules", edit: func(p *launch.Pipeline) { p.Modules = nil }, wantErr: "modules: at least one"},
		{name: "exec and command", edit: func(p *launch.Pipeline) { p.Modules[0].Exec = []string{"python3", "m.py"} }, wantErr: "modules[0].exec: runs the program under serket module exec"},
		{name: "empty exec program", edit: func(p *launch.Pipeline) {
			p.Modules[0].Command, p.Modules[0].Exec = []string{"serket", "module", "exec"}, []string{""}
		}, wantErr: "modules[0].exec[0]"},
		{name: "exec integrator", edit: func(p *launch.Pipeline) { p.Integrator.Exec = []string{"python3"} }, wantErr: "integrator.exec: only a module"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := launch.Default()
			tt.edit(p)
			err := p.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v", err)
			case tt.wantErr != "" && (err == nil || !errors.Is(err, launch.ErrInvalidPipeline) || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Validate() = %v, want an ErrInvalidPipeline containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "pipeline.yaml")
	if err := os.WriteFile(good, []byte(fullExample), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("latent: 0\nmodules: [{name: a}]"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		path     string
		wantName string
		wantErr  []string
		wantIs   error
	}{
		{name: "good", path: good, wantName: "robot-1"},
		{name: "missing", path: filepath.Join(dir, "nope.yaml"), wantErr: []string{filepath.Join(dir, "nope.yaml")}, wantIs: fs.ErrNotExist},
		{name: "invalid", path: bad, wantErr: []string{bad + ": latent"}, wantIs: launch.ErrInvalidPipeline},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := launch.Load(tt.path)
			if tt.wantErr == nil {
				if err != nil || p.Name != tt.wantName {
					t.Fatalf("Load(%s) = %+v, %v", tt.path, p, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Load(%s) = %+v, want an error", tt.path, p)
			}
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("error %q does not wrap %v", err, tt.wantIs)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestDurationYAML(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    launch.Duration
		wantOut string
		wantErr bool
	}{
		{name: "ms", in: "200ms", want: ms(200), wantOut: "200ms"},
		{name: "s", in: "10s", want: ms(10000), wantOut: "10s"},
		{name: "compound", in: "1m30s", want: ms(90000), wantOut: "1m30s"},
		{name: "zero", in: "0", want: 0, wantOut: "0s"},
		{name: "quoted", in: `"2s"`, want: ms(2000), wantOut: "2s"},
		{name: "no unit", in: "5", wantErr: true},
		{name: "garbage", in: "soon", wantErr: true},
		{name: "list", in: "[1s]", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var d launch.Duration
			err := yaml.Unmarshal([]byte(tt.in), &d)
			if tt.wantErr {
				if err == nil {
					t.Errorf("Unmarshal(%q) = %v, want an error", tt.in, d)
				}
				return
			}
			if err != nil || d != tt.want {
				t.Fatalf("Unmarshal(%q) = %v, %v; want %v", tt.in, d, err, tt.want)
			}
			out, err := yaml.Marshal(d)
			if err != nil || strings.TrimSpace(string(out)) != tt.wantOut {
				t.Errorf("Marshal(%v) = %q, %v; want %q", d, out, err, tt.wantOut)
			}
		})
	}
}

// TestExecModuleSpec: a module given by exec runs as serket module exec,
// its args serket's flags, the program in the pipeline file's directory.
func TestExecModuleSpec(t *testing.T) {
	p, err := launch.Parse([]byte("modules:\n  - {name: touchpy, exec: [python3, touch.py, --hidden, 64], args: [--private, 8]}\n"), "pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p.Base = "/srv/p" // Load sets it to the file's directory
	s := p.Specs("/bin/serket", nil)[1]
	want := []string{"module", "exec", "--private", "8", "--dir", "/srv/p", "--", "python3", "touch.py", "--hidden", "64"}
	if s.Path != "/bin/serket" || !slices.Equal(s.Args, want) {
		t.Errorf("spec %s %q, want /bin/serket %q", s.Path, s.Args, want)
	}
}

func TestSpecs(t *testing.T) {
	t.Setenv("LAUNCH_TEST_INHERITED", "yes") // not parallel: changes the environment
	p, err := launch.Parse([]byte(toyPipeline), "toy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p.Modules[0].Env = map[string]string{"Z": "last", "A": "first", "LAUNCH_TEST_INHERITED": "overridden"}
	p.Modules[1].Command = []string{"/opt/bin/right", "serve"}
	p.Modules[1].Dir = "/srv"
	specs := p.Specs("/usr/local/bin/serket", []string{"SERKET_NATS_URL=nats://x:1"})

	tests := []struct {
		name     string
		wantPath string
		wantArgs []string
		wantDir  string
		wantEnv  []string // suffix of the environment
	}{
		{name: "integrator", wantPath: "/usr/local/bin/serket", wantArgs: []string{"integrator"}, wantEnv: []string{"SERKET_NATS_URL=nats://x:1"}},
		{name: "left", wantPath: "/usr/local/bin/serket", wantArgs: []string{"module", "toy", "--dim", "8"},
			wantEnv: []string{"SERKET_NATS_URL=nats://x:1", "A=first", "LAUNCH_TEST_INHERITED=overridden", "Z=last"}},
		{name: "right", wantPath: "/opt/bin/right", wantArgs: []string{"serve", "--dim", "6"}, wantDir: "/srv", wantEnv: []string{"SERKET_NATS_URL=nats://x:1"}},
		{name: "top", wantPath: "/usr/local/bin/serket", wantArgs: []string{"module", "toy", "--dim", "4"}, wantEnv: []string{"SERKET_NATS_URL=nats://x:1"}},
	}
	if len(specs) != len(tests) {
		t.Fatalf("got %d specs, want %d", len(specs), len(tests))
	}
	for i, tt := range tests {
		s := specs[i]
		if s.Name != tt.name || s.Path != tt.wantPath || !slices.Equal(s.Args, tt.wantArgs) || s.Dir != tt.wantDir {
			t.Errorf("spec %d = {%s %s %q %s}, want {%s %s %q %s}", i, s.Name, s.Path, s.Args, s.Dir, tt.name, tt.wantPath, tt.wantArgs, tt.wantDir)
		}
		if !slices.Contains(s.Env, "LAUNCH_TEST_INHERITED=yes") {
			t.Errorf("%s: environment lacks the inherited variable", s.Name)
		}
		if len(s.Env) < len(tt.wantEnv) || !slices.Equal(s.Env[len(s.Env)-len(tt.wantEnv):], tt.wantEnv) {
			t.Errorf("%s: environment ends with %q, want %q", s.Name, s.Env[max(0, len(s.Env)-len(tt.wantEnv)):], tt.wantEnv)
		}
		if i > 0 && s.Restart != p.Modules[i-1].Restart {
			t.Errorf("%s: restart %+v, want %+v", s.Name, s.Restart, p.Modules[i-1].Restart)
		}
		if want := 5 * time.Second; s.Startup != want {
			t.Errorf("%s: start-up window %v, want the default %v", s.Name, s.Startup, want)
		}
	}
	if specs[0].Restart.Policy != launch.Always {
		t.Errorf("integrator restart policy %q, want always", specs[0].Restart.Policy)
	}
}

// toyPipeline is three toy modules with different input sizes.
const toyPipeline = `
modules:
  - {name: left, command: [serket, module, toy], args: [--dim, "8"]}
  - {name: right, command: [serket, module, toy], args: [--dim, "6"]}
  - {name: top, command: [serket, module, toy], args: [--dim, "4"]}
`

func TestParseTrainSection(t *testing.T) {
	good := `
modules: [{name: vision}, {name: language}]
train:
  epochs: 5
  batch: 64
  plan: cross
  lambda: {language: 50}
  kl_anneal: 2
  step_deadline: 10s
  checkpoint_every: 0
  checkpoint_interval: 90s
  paired_fraction: 0.1
  paired_share: 0.25
  seen_only: true
  lr: 0.003
`
	p, err := launch.Parse([]byte(good), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tr := p.Train
	if tr == nil || tr.Epochs != 5 || tr.Batch != 64 || tr.Plan != "cross" || tr.Lambda["language"] != 50 ||
		*tr.KLAnneal != 2 || time.Duration(tr.StepDeadline) != 10*time.Second || tr.CheckpointEvery == nil || *tr.CheckpointEvery != 0 ||
		tr.CheckpointInterval == nil || time.Duration(*tr.CheckpointInterval) != 90*time.Second ||
		tr.PairedFraction == nil || *tr.PairedFraction != 0.1 || tr.LR == nil || *tr.LR != 0.003 ||
		tr.PairedShare == nil || *tr.PairedShare != 0.25 || tr.SeenOnly == nil || !*tr.SeenOnly {
		t.Fatalf("train section %+v", tr)
	}
	for _, tt := range []struct{ name, section, field string }{
		{"bad plan", "plan: moe", "train.plan"},
		{"unknown module", "lambda: {audio: 1}", "train.lambda.audio"},
		{"negative weight", "lambda: {vision: -1}", "train.lambda.vision"},
		{"negative epochs", "epochs: -2", "train.epochs"},
		{"negative checkpoint interval", "checkpoint_interval: -1s", "train.checkpoint_interval"},
		{"negative kl", "kl_to: -1", "train.kl_to"},
		{"no pairing", "paired_fraction: 0", "train.paired_fraction"},
		{"zero learning rate", "lr: 0", "train.lr"},
		{"pairing above 1", "paired_fraction: 1.5", "train.paired_fraction"},
		{"paired share of all", "paired_share: 1", "train.paired_share"},
		{"negative paired share", "paired_share: -0.5", "train.paired_share"},
		{"unknown field", "learning_rate: 0.1", "learning_rate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := launch.Parse([]byte("modules: [{name: vision}]\ntrain:\n  "+tt.section+"\n"), "p.yaml")
			if !errors.Is(err, launch.ErrInvalidPipeline) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("error %v, want one naming %s", err, tt.field)
			}
		})
	}
}

// Streaming settings reach the processes through their environment, and
// bad ones are named.
func TestStreamingSettings(t *testing.T) {
	p, err := launch.Parse([]byte(`
modules:
  - {name: vision, sensors: [robot.camera, robot.camera2], sensor_type: image/png, rate: 5}
  - {name: language, say_beliefs: true}
fusion: {slop: 300ms, belief_period: 50ms}
`), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	specs := p.Specs("/bin/serket", nil)
	env := map[string][]string{}
	for _, s := range specs {
		env[s.Name] = s.Env
	}
	for _, c := range []struct{ proc, kv string }{
		{"vision", "SERKET_SENSORS=robot.camera,robot.camera2"},
		{"vision", "SERKET_SENSOR_TYPE=image/png"},
		{"vision", "SERKET_SENSOR_RATE=5"},
		{"language", "SERKET_SAY_BELIEFS=1"},
		{"integrator", "SERKET_SLOP=300ms"},
		{"integrator", "SERKET_BELIEF_PERIOD=50ms"},
	} {
		if !slices.Contains(env[c.proc], c.kv) {
			t.Errorf("%s's environment has no %s", c.proc, c.kv)
		}
	}
	if slices.ContainsFunc(env["language"], func(kv string) bool { return strings.HasPrefix(kv, "SERKET_SENSORS=") }) {
		t.Error("a module without sensors got SERKET_SENSORS")
	}
	for _, tt := range []struct{ yaml, field string }{
		{"modules: [{name: vision, sensors: [ok, 'bad subject']}]", "modules[0].sensors[1]"},
		{"modules: [{name: vision, sensors: ['a..b']}]", "modules[0].sensors[0]"},
		{"modules: [{name: vision, rate: -1}]", "modules[0].rate"},
		{"modules: [{name: vision, sensors: ['robot.camera,robot.mic']}]", "modules[0].sensors[0]"},
		{"modules: [{name: vision, sensors: ['robot.>.camera']}]", "modules[0].sensors[0]"},
		{"modules: [{name: vision, sensor_type: png}]", "modules[0].sensor_type"},
		{"modules: [{name: vision}]\nfusion: {slop: -1s}", "fusion.slop"},
	} {
		_, err := launch.Parse([]byte(tt.yaml), "p.yaml")
		if !errors.Is(err, launch.ErrInvalidPipeline) || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%q: %v, want an error naming %s", tt.yaml, err, tt.field)
		}
	}
}

// A pipeline file's relative command paths and working directories are
// taken from the file's directory, so it runs the same from anywhere;
// bare names and absolute paths are left alone.
func TestLoadResolvesRelativeCommands(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "pipeline.yaml")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	file := `
modules:
  - {name: near, command: [./bin/touch, --fast], dir: work}
  - {name: far, command: [../tools/sensor]}
  - {name: onpath, command: [python3, sensor.py]}
  - {name: fixed, command: [/opt/sensor], dir: /srv}
  - {name: self}
`
	if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := launch.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "sub")
	if p.Base != base {
		t.Fatalf("Base %q, want %q", p.Base, base)
	}
	want := []struct{ path, dir string }{
		{"/bin/serket", ""}, // the integrator
		{filepath.Join(base, "bin/touch"), filepath.Join(base, "work")},
		{filepath.Join(dir, "tools/sensor"), ""},
		{"python3", ""},
		{"/opt/sensor", "/srv"},
		{"/bin/serket", ""},
	}
	for i, s := range p.Specs("/bin/serket", nil) {
		if s.Path != want[i].path || s.Dir != want[i].dir {
			t.Errorf("%s: path %q dir %q, want %q %q", s.Name, s.Path, s.Dir, want[i].path, want[i].dir)
		}
	}
}
