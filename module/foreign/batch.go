package foreign

import (
	"fmt"
	"runtime"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/module"
)

// batch is a batch the child holds, by its handle. When the Go side lets
// go of it, the garbage collector's cleanup puts the handle on the free
// list, and the next request tells the child to drop it.
type batch struct {
	m   *Module
	h   uint64
	n   int
	err error // why it could not be made (a failed pick); then h is void
}

func (b *batch) Len() int { return b.n }

// pickable is a batch of a child that serves pick.
type pickable struct{ *batch }

// Pick implements module.Picker. Pick cannot fail, so a pick the child
// refuses gives a batch that carries the error to whatever reads it.
func (p pickable) Pick(rows []int) module.Batch {
	b, err := p.m.pick(p.batch, rows)
	if err != nil {
		return &batch{m: p.m, n: len(rows), err: err}
	}
	return b
}

// newBatch wraps handle h of n rows, pickable if the child serves pick.
func (m *Module) newBatch(h uint64, n int) module.Batch {
	b := &batch{m: m, h: h, n: n}
	runtime.AddCleanup(b, m.release, h)
	if m.caps["pick"] {
		return pickable{b}
	}
	return b
}

// release puts handle h on the free list (the garbage collector calls it
// from its own goroutine).
func (m *Module) release(h uint64) {
	m.freeMu.Lock()
	m.free = append(m.free, h)
	m.freeMu.Unlock()
}

// takeFree empties the free list into the next request.
func (m *Module) takeFree() []uint64 {
	m.freeMu.Lock()
	defer m.freeMu.Unlock()
	f := m.free
	m.free = nil
	return f
}

// batchOf is x as a batch of this module's child.
func (m *Module) batchOf(x module.Batch) (*batch, error) {
	var b *batch
	switch v := x.(type) {
	case *batch:
		b = v
	case pickable:
		b = v.batch
	default:
		return nil, fmt.Errorf("%s: a batch of type %T, not one of this module's", m.c.who, x)
	}
	if b.m != m {
		return nil, fmt.Errorf("%s: a batch of another module's child", m.c.who)
	}
	return b, b.err
}

// made checks a reply that makes a batch of n rows and wraps it.
func (m *Module) made(op string, rep *reply, n int) (module.Batch, error) {
	if rep.Batch == nil || rep.N != n {
		return nil, m.broken(op, fmt.Errorf("%w: a batch handle and n = %d are due, got n = %d", errShape, n, rep.N))
	}
	return m.newBatch(*rep.Batch, n), nil
}

func (m *Module) pick(b *batch, rows []int) (module.Batch, error) {
	defer runtime.KeepAlive(b)
	req := pickReq{Batch: b.h, Rows: rowBytes(nil, rows)}
	rep, err := m.call(&req.head, &req, "pick")
	if err != nil {
		return nil, err
	}
	return m.made("pick", rep, len(rows))
}

// LoadBatch implements module.Loader. The pairing mask (Config.Keep) is
// drawn here, so a row it withholds is absent whatever the child says.
func (m *Module) LoadBatch(ids []uint64) (module.Batch, []bool, error) {
	keep := make([]byte, len(ids))
	for i, id := range ids {
		if m.c.cfg.Keep == nil || m.c.cfg.Keep(id) {
			keep[i] = 1
		}
	}
	req := loadReq{IDs: uint64s(nil, ids), Keep: keep}
	rep, err := m.call(&req.head, &req, "load")
	if err != nil {
		return nil, nil, err
	}
	present, err := flags(rep.Present, len(ids), "present")
	if err != nil {
		return nil, nil, m.broken("load", err)
	}
	for i := range present {
		present[i] = present[i] && keep[i] == 1
	}
	x, err := m.made("load", rep, len(ids))
	return x, present, err
}

// Parse implements module.Parser.
func (m *Module) Parse(raw []bus.Payload) (module.Batch, error) {
	req := parseReq{Raw: raw}
	rep, err := m.call(&req.head, &req, "parse")
	if err != nil {
		return nil, err
	}
	return m.made("parse", rep, len(raw))
}
