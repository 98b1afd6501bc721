package launch

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// sections names, as a pipeline file's author knows them, the Go types the
// YAML decoder reports unknown fields in.
var sections = map[string]struct {
	where string
	typ   reflect.Type
}{
	"launch.Pipeline":       {"at the top level", reflect.TypeFor[Pipeline]()},
	"launch.TrainSettings":  {"in train", reflect.TypeFor[TrainSettings]()},
	"launch.NATSConfig":     {"in nats", reflect.TypeFor[NATSConfig]()},
	"launch.Process":        {"in a module or the integrator", reflect.TypeFor[Process]()},
	"launch.RestartPolicy":  {"in restart", reflect.TypeFor[RestartPolicy]()},
	"launch.FusionSettings": {"in fusion", reflect.TypeFor[FusionSettings]()},
}

var unknownField = regexp.MustCompile(`^line (\d+): field (.+) not found in type (\S+)$`)

// plainYAMLError rewrites the decoder's "field data not found in type
// launch.TrainSettings" as `line 3: unknown key "data" in train (known:
// batch, …)`, and its "cannot unmarshal !!str `x` into int" the same way,
// without Go's names.
func plainYAMLError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	msgs := make([]string, len(te.Errors))
	for i, e := range te.Errors {
		msgs[i] = plainMessage(e)
	}
	return errors.New(strings.Join(msgs, "; "))
}

func plainMessage(e string) string {
	m := unknownField.FindStringSubmatch(e)
	if m == nil {
		r := strings.NewReplacer("!!str", "a string", "!!int", "a number", "!!float", "a number", "!!bool", "true or false",
			"!!map", "a mapping", "!!seq", "a list", "into launch.Duration", "into a duration", "into launch.Policy", "into a restart policy",
			"into []string", "into a list of strings", "into map[string]string", "into a mapping of strings",
			"into map[string]float64", "into a mapping of numbers", "into float64", "into a number", "into int", "into a whole number",
			"into uint64", "into a whole number", "into string", "into a string", "into bool", "into true or false")
		return r.Replace(e)
	}
	s, ok := sections[m[3]]
	if !ok {
		return fmt.Sprintf("line %s: unknown key %q", m[1], m[2])
	}
	msg := fmt.Sprintf("line %s: unknown key %q %s (known: %s)", m[1], m[2], s.where, strings.Join(yamlKeys(s.typ), ", "))
	if m[2] == "data" && m[3] == "launch.TrainSettings" {
		msg += `; the dataset is a top-level setting (data: DIR)`
	}
	return msg
}

// yamlKeys are the keys a struct type takes in YAML.
func yamlKeys(t reflect.Type) []string {
	var out []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}
