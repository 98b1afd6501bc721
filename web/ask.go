package web

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/client"
	"github.com/serket-go/serket/internal/boundedread"
)

// asker answers the page's "ask it" form with the inference `serket infer`
// does, and the errors it gives.
type asker struct {
	hub     *Hub
	timeout time.Duration
	busy    chan struct{} // one slot per inference under way
}

// The form's limits: the observations together as one request carries,
// plus room for the form itself; at most maxSamples samples; at most
// asksAtOnce inferences under way from every page together.
const (
	formOverhead = 1 << 20
	maxSamples   = 8
	asksAtOnce   = 2
	maxField     = 4096 // bytes of a typed field
)

// askReply is the page's answer: the reply as `serket infer` prints it.
type askReply struct {
	Contributors []string                `json:"contributors"`
	Missing      map[string]string       `json:"missing,omitempty"`
	Concept      string                  `json:"concept,omitempty"`
	Outputs      map[string][]outputView `json:"outputs"`
	// Unanswered is the CLI's error for an incomplete inference: inputs
	// not used and wanted modules that rendered nothing, with why.
	Unanswered string `json:"unanswered,omitempty"`
}

type outputView struct {
	Type    string `json:"type"`
	Text    string `json:"text,omitempty"`
	DataURL string `json:"data_url,omitempty"`
	Bytes   int    `json:"bytes"`
}

func (a *asker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	select {
	case a.busy <- struct{}{}:
		defer func() { <-a.busy }()
	default:
		askError(w, http.StatusTooManyRequests, fmt.Errorf("%d inferences are under way already; ask again when one is done", asksAtOnce))
		return
	}
	req, err := readAsk(w, r)
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, bus.ErrTooLarge) || errors.Is(err, boundedread.ErrTooLarge) {
			status = http.StatusRequestEntityTooLarge
		}
		askError(w, status, err)
		return
	}
	// The browser's request is the inference's: a page closed while it
	// waits leaves nothing running.
	ctx, cancel := context.WithTimeout(r.Context(), a.timeout)
	defer cancel()
	rep, err := a.hub.Infer(ctx, req)
	if err != nil {
		status := http.StatusBadGateway
		if errors.Is(err, bus.ErrTooLarge) {
			status = http.StatusRequestEntityTooLarge
		}
		askError(w, status, err)
		return
	}
	out := askReply{Contributors: rep.Contributors, Missing: rep.Missing, Concept: client.Concepts(rep), Outputs: map[string][]outputView{}}
	if out.Contributors == nil {
		out.Contributors = []string{}
	}
	for name, outs := range rep.Outputs {
		for _, o := range outs {
			out.Outputs[name] = append(out.Outputs[name], outputOf(o))
		}
	}
	if err := client.Unanswered(req, rep, func(_ bool, name string) string { return name }); err != nil {
		out.Unanswered = err.Error()
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

// outputOf is one rendering for the page: text inline, a type a browser
// shows safely as a data URL, anything else only as its size and type.
func outputOf(p bus.Payload) outputView {
	v := outputView{Type: p.Type, Bytes: len(p.Data)}
	switch {
	case strings.HasPrefix(p.Type, "text/"):
		v.Text = strings.ToValidUTF8(string(p.Data), "�")
	case displayable(p.Type):
		v.DataURL = "data:" + baseType(p.Type) + ";base64," + base64.StdEncoding.EncodeToString(p.Data)
	}
	return v
}

// readAsk turns the form into the request `serket infer` would send:
// text.<module> is a typed input, file.<module> an upload (its media type
// from its name, as the CLI takes it from a file's), want the modules to
// decode, samples the latent samples. Its errors are the CLI's, in the
// form's words.
func readAsk(w http.ResponseWriter, r *http.Request) (*bus.InferRequest, error) {
	r.Body = http.MaxBytesReader(w, r.Body, bus.MaxObservationBytes+formOverhead)
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, fmt.Errorf("the form is not multipart/form-data: %w", err)
	}
	req := &bus.InferRequest{Observations: map[string]bus.Payload{}, Seed: 1}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, formError(err)
		}
		if err := readPart(req, part); err != nil {
			return nil, err
		}
	}
	if err := client.CheckObservations(req.Observations); err != nil {
		return nil, err
	}
	if len(req.Observations) == 0 && len(req.Want) == 0 {
		return nil, errors.New("give at least one input or one module to generate")
	}
	return req, nil
}

// readPart adds one form field to req.
func readPart(req *bus.InferRequest, part *multipart.Part) error {
	defer part.Close()
	field := part.FormName()
	kind, module, _ := strings.Cut(field, ".")
	if (kind == "text" || kind == "file") && !bus.ValidName(module) {
		return fmt.Errorf("%q is not a module name", module)
	}
	if _, dup := req.Observations[module]; dup && (kind == "text" || kind == "file") {
		return fmt.Errorf("%s has two inputs: give it text or a file, not both", module)
	}
	switch kind {
	case "file":
		name := part.FileName()
		if name == "" {
			name = "upload"
		}
		p, err := client.ReadUpload("upload "+name+" for "+module, name, part)
		if err != nil {
			return formError(err)
		}
		req.Observations[module] = p
	case "text", "want", "samples":
		b, err := io.ReadAll(io.LimitReader(part, maxField+1))
		if err != nil {
			return formError(err)
		}
		if len(b) > maxField {
			return fmt.Errorf("field %s is longer than %d bytes", field, maxField)
		}
		v := string(b)
		switch kind {
		case "text":
			req.Observations[module] = bus.Payload{Type: "text/plain; charset=utf-8", Data: []byte(v)}
		case "want":
			if !bus.ValidName(v) {
				return fmt.Errorf("%q is not a module name", v)
			}
			if !slices.Contains(req.Want, v) {
				req.Want = append(req.Want, v)
			}
		case "samples":
			s, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || s < 0 || s > maxSamples {
				return fmt.Errorf("samples %q: give a whole number from 0 (the fused mean) to %d", v, maxSamples)
			}
			req.Samples = s
		}
	default:
		return fmt.Errorf("unknown form field %q (want text.MODULE, file.MODULE, want or samples)", field)
	}
	return nil
}

// formError says that an upload was over what one request carries when
// the body limit cut it.
func formError(err error) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return fmt.Errorf("%w: the form is over %d MiB, and one inference request carries at most %d MiB of input", bus.ErrTooLarge, tooBig.Limit>>20, bus.MaxObservationBytes>>20)
	}
	return err
}

func askError(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}
