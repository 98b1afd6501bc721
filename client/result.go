package client

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/internal/boundedread"
)

// Unanswered is an error naming every observation of req the pipeline did
// not use and every wanted module that rendered nothing, each with the
// reason the reply gives; nil when the inference is complete. Callers show
// the reply first and then this, so that a script (or a page) sees a
// failed inference as a failure. label names an input (from) or an output
// as the caller's user gave it: the CLI says "--from language", a web page
// the module's name.
func Unanswered(req *bus.InferRequest, rep *bus.InferReply, label func(from bool, module string) string) error {
	var bad []string
	for _, name := range slices.Sorted(maps.Keys(req.Observations)) {
		if !slices.Contains(rep.Contributors, name) {
			bad = append(bad, fmt.Sprintf("%s was not used (%s)", label(true, name), orUnknown(rep.Missing[name])))
		}
	}
	for _, name := range req.Want {
		if len(rep.Outputs[name]) == 0 {
			bad = append(bad, fmt.Sprintf("%s rendered nothing (%s)", label(false, name), orUnknown(rep.Missing[name])))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("inference incomplete: %s", strings.Join(bad, "; "))
	}
	return nil
}

func orUnknown(reason string) string {
	if reason == "" {
		return "no reason given"
	}
	return reason
}

// Concepts says under which prior module's prior the reply's latents are,
// and the category it gave each; "" for N(0, I).
func Concepts(rep *bus.InferReply) string {
	if rep.Prior == "" {
		return ""
	}
	cs := make([]string, len(rep.Concept))
	for i, c := range rep.Concept {
		cs[i] = fmt.Sprint(c)
	}
	return fmt.Sprintf("under prior module %s's prior; its categories: %s", rep.Prior, strings.Join(cs, ", "))
}

// ReadUpload reads one observation from r, an upload of a file named
// name (its media type from name's extension, as ReadObservation takes it
// from a path). It refuses more than bus.MaxObservationBytes, what one
// request carries, with an error naming the upload (label) and the limit,
// as the CLI's for a file.
func ReadUpload(label, name string, r io.Reader) (bus.Payload, error) {
	data, err := io.ReadAll(io.LimitReader(r, bus.MaxObservationBytes+1))
	if err != nil {
		return bus.Payload{}, fmt.Errorf("%s: %w", label, err)
	}
	if len(data) > bus.MaxObservationBytes {
		return bus.Payload{}, fmt.Errorf("%s: %w: more than %s, the limit is %s", label, boundedread.ErrTooLarge,
			boundedread.Size(bus.MaxObservationBytes), boundedread.Size(bus.MaxObservationBytes))
	}
	return bus.Payload{Type: MediaType(name), Data: data}, nil
}
