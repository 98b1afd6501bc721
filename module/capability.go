package module

// Partial is a Modality that implements every optional interface in Go but
// serves only some of them, as it learns when it starts: a program in
// another language behind `serket module exec` (package module/foreign)
// says in its handshake what it can do, and Go types cannot be made at run
// time to match. Serves reports whether it serves cap.
type Partial interface {
	Serves(cap Capability) bool
}

// Capability names an optional interface of a Modality.
type Capability string

// The capabilities, one per optional interface; the names are the ones
// the exec protocol's handshake lists (docs/foreign.md).
const (
	CanLearn    Capability = "learn"    // Learner
	CanLoad     Capability = "load"     // Loader
	CanScore    Capability = "score"    // Scorer
	CanFeatures Capability = "features" // Featurer
	CanParse    Capability = "parse"    // Parser
	CanRender   Capability = "render"   // Renderer
	CanSave     Capability = "save"     // Saver
	// CanDecodeMany: MultiDecoder. The Python SDK serves it for every
	// module, by calling decode per term unless the program decodes them
	// together itself, so that a step's terms cost one call.
	CanDecodeMany Capability = "decode_many"
)

// Capabilities lists every Capability.
var Capabilities = []Capability{CanLearn, CanLoad, CanScore, CanFeatures, CanParse, CanRender, CanSave, CanDecodeMany}

// As is m as the optional interface T (Learner, Loader, Scorer, Featurer,
// Parser, Renderer, Saver or MultiDecoder) if m has it: implements it and, if m is
// Partial, serves it. Everything that asks what a modality can do asks
// As, never a bare type assertion, so that a Partial modality is taken
// for what it serves.
func As[T any](m any) (T, bool) {
	t, ok := m.(T)
	if !ok {
		return t, false
	}
	if p, partial := m.(Partial); partial && !p.Serves(capabilityOf[T]()) {
		var none T
		return none, false
	}
	return t, true
}

// capabilityOf is the Capability of interface T; "" for any other type,
// which no Partial serves.
func capabilityOf[T any]() Capability {
	switch any((*T)(nil)).(type) {
	case *Learner:
		return CanLearn
	case *Loader:
		return CanLoad
	case *Scorer:
		return CanScore
	case *Featurer:
		return CanFeatures
	case *Parser:
		return CanParse
	case *Renderer:
		return CanRender
	case *Saver:
		return CanSave
	case *MultiDecoder:
		return CanDecodeMany
	}
	return ""
}
