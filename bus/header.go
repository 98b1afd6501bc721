package bus

// SetSender sets the name the message is sent under; every Message has it
// through its embedded Header.
func (h *Header) SetSender(name string) { h.Sender = name }
