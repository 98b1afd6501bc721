//go:build !unix

package procenv

// isPipe is false where serket's supervisor does not run (it is for Unix
// systems): NotifyReady refuses any descriptor there.
func isPipe(int) bool { return false }
