package eval

// SetIWAELatents sets how many latents one IWAE request scores, until the
// returned function puts it back.
func SetIWAELatents(n int) (restore func()) {
	old := iwaeLatents
	iwaeLatents = n
	return func() { iwaeLatents = old }
}
