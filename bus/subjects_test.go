package bus_test

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/serket-go/serket/bus"
)

func TestNewSubjects(t *testing.T) {
	tests := []struct {
		name       string
		pipeline   string
		wantPrefix string
		wantErr    bool
	}{
		{name: "empty is default", pipeline: "", wantPrefix: "serket.v2.default"},
		{name: "default", pipeline: "default", wantPrefix: "serket.v2.default"},
		{name: "named", pipeline: "robot-2", wantPrefix: "serket.v2.robot-2"},
		{name: "32 bytes", pipeline: "a" + strings.Repeat("b", 31), wantPrefix: "serket.v2.a" + strings.Repeat("b", 31)},
		{name: "33 bytes", pipeline: "a" + strings.Repeat("b", 32), wantErr: true},
		{name: "upper case", pipeline: "Robot", wantErr: true},
		{name: "dot", pipeline: "a.b", wantErr: true},
		{name: "wildcard", pipeline: "*", wantErr: true},
		{name: "full wildcard", pipeline: ">", wantErr: true},
		{name: "space", pipeline: "a b", wantErr: true},
		{name: "leading digit", pipeline: "2robot", wantErr: true},
		{name: "leading dash", pipeline: "-robot", wantErr: true},
		{name: "underscore", pipeline: "a_b", wantErr: true},
		{name: "trailing newline", pipeline: "robot\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := bus.NewSubjects(tt.pipeline)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("NewSubjects(%q) = %q, want an error", tt.pipeline, s.Prefix())
				}
				if !strings.Contains(err.Error(), strconv.Quote(tt.pipeline)) {
					t.Errorf("error %q does not name the pipeline", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Prefix() != tt.wantPrefix {
				t.Errorf("Prefix() = %q, want %q", s.Prefix(), tt.wantPrefix)
			}
		})
	}
}

func TestSubjectScheme(t *testing.T) {
	s, err := bus.NewSubjects("")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"step", s.Step(), "serket.v2.default.train.step"},
		{"post", s.Post("vision"), "serket.v2.default.post.vision"},
		{"latent", s.Latent(), "serket.v2.default.latent"},
		{"zgrad", s.ZGrad("vision"), "serket.v2.default.zgrad.vision"},
		{"egrad", s.EGrad("vision"), "serket.v2.default.egrad.vision"},
		{"infer", s.Infer(), "serket.v2.default.infer"},
		{"encode", s.Encode("vision"), "serket.v2.default.encode.vision"},
		{"decode", s.Decode("vision"), "serket.v2.default.decode.vision"},
		{"obs post", s.ObsPost("vision"), "serket.v2.default.obs.post.vision"},
		{"belief", s.Belief(), "serket.v2.default.belief"},
		{"train progress", s.TrainProgress(), "serket.v2.default.train.progress"},
		{"service name", bus.ServiceName("vision"), "serket-vision"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestRelative(t *testing.T) {
	s, err := bus.NewSubjects("robot")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		subject string
		want    string
	}{
		{name: "relative", subject: "latent", want: "serket.v2.robot.latent"},
		{name: "relative wildcard", subject: "post.*", want: "serket.v2.robot.post.*"},
		{name: "absolute", subject: "serket.v2.x.y", want: "serket.v2.x.y"},
		{name: "absolute other version", subject: "serket.v2.robot.latent", want: "serket.v2.robot.latent"},
		{name: "system", subject: "$SRV.PING", want: "$SRV.PING"},
		{name: "empty is everything", subject: "", want: "serket.v2.robot.>"},
		{name: "everything", subject: ">", want: "serket.v2.robot.>"},
		{name: "serket without dot", subject: "serket", want: "serket.v2.robot.serket"},
		{name: "serketx", subject: "serketx.a", want: "serket.v2.robot.serketx.a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.Relative(tt.subject); got != tt.want {
				t.Errorf("Relative(%q) = %q, want %q", tt.subject, got, tt.want)
			}
		})
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"vision", true},
		{"a", true},
		{"a-1", true},
		{"a" + strings.Repeat("z", 31), true},
		{"a" + strings.Repeat("z", 32), false},
		{"", false},
		{"Vision", false},
		{"1a", false},
		{"a.b", false},
		{"a*", false},
		{"é", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := bus.ValidName(tt.name); got != tt.want {
				t.Errorf("ValidName(%q) = %v, want %v", tt.name, got, tt.want)
			}
		})
	}
}

// ValidName is the rule ^[a-z][a-z0-9-]{0,31}$, byte for byte.
func FuzzValidName(f *testing.F) {
	rule := regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)
	for _, s := range []string{"vision", "a-1", "", "Vision", "a.b", "é", "a\n", strings.Repeat("z", 33), "z" + strings.Repeat("-", 31)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := bus.ValidName(s), rule.MatchString(s); got != want {
			t.Errorf("ValidName(%q) = %v, the rule says %v", s, got, want)
		}
	})
}
