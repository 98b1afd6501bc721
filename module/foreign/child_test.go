package foreign_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/toy"
)

// The test binary doubles as a child program: with $FOREIGN_CHILD set, it
// serves serket's toy modality over the exec protocol, written here from
// docs/foreign.md alone (a second implementation beside the Python SDK),
// and $FOREIGN_MISBEHAVE makes it break the protocol in one way at one
// call ("garbage:encode", "exit:decode", …; see misbehave).
const (
	envChild     = "FOREIGN_CHILD"
	envMisbehave = "FOREIGN_MISBEHAVE"
)

// childReq holds every key a request may have.
type childReq struct {
	Op       string         `msgpack:"op"`
	Seq      uint64         `msgpack:"seq"`
	Free     []uint64       `msgpack:"free"`
	Protocol int            `msgpack:"protocol"`
	Config   map[string]any `msgpack:"config"`
	IDs      []byte         `msgpack:"ids"`
	Keep     []byte         `msgpack:"keep"`
	Raw      []bus.Payload  `msgpack:"raw"`
	Batch    uint64         `msgpack:"batch"`
	Rows     []byte         `msgpack:"rows"`
	Z        []byte         `msgpack:"z"`
	W        []byte         `msgpack:"w"`
	DMu      []byte         `msgpack:"dmu"`
	DLogVar  []byte         `msgpack:"dlogvar"`
	N        int            `msgpack:"n"`
	Terms    int            `msgpack:"terms"`
	State    []byte         `msgpack:"state"`
}

// toyChild is the toy modality and the batches it holds.
type toyChild struct {
	m       *toy.Toy
	batches map[uint64]module.Batch
	next    uint64
}

// serveChild is the child's main loop; it returns the exit status.
func serveChild() int {
	in := bufio.NewReader(os.Stdin)
	c := &toyChild{batches: map[uint64]module.Batch{}, next: 1}
	bad := strings.SplitN(os.Getenv(envMisbehave), ":", 2)
	fmt.Fprintln(os.Stderr, "toy child: serving")
	for {
		var head [4]byte
		if _, err := io.ReadFull(in, head[:]); err != nil {
			return 0 // stdin closed: serket is done
		}
		body := make([]byte, binary.LittleEndian.Uint32(head[:]))
		if _, err := io.ReadFull(in, body); err != nil {
			return 2
		}
		var req childReq
		if err := msgpack.Unmarshal(body, &req); err != nil {
			fmt.Fprintln(os.Stderr, "toy child: bad request:", err)
			return 2
		}
		for _, h := range req.Free {
			delete(c.batches, h)
		}
		rep := map[string]any{"seq": req.Seq}
		if len(bad) == 2 && bad[1] == req.Op && misbehave(bad[0], rep) {
			continue
		}
		if err := c.handle(&req, rep); err != nil {
			rep["error"] = err.Error()
		}
		if len(bad) == 2 && bad[1] == req.Op {
			spoil(bad[0], rep)
		}
		out, _ := msgpack.Marshal(rep)
		os.Stdout.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(out))))
		os.Stdout.Write(out)
	}
}

// misbehave acts out the misbehaviours that replace a reply, and reports
// whether it did.
func misbehave(how string, rep map[string]any) bool {
	switch how {
	case "garbage":
		os.Stdout.Write([]byte{5, 0, 0, 0, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1})
	case "huge":
		os.Stdout.Write([]byte{0xff, 0xff, 0xff, 0x7f})
	case "exit":
		fmt.Fprintln(os.Stderr, "toy child: exiting on purpose")
		os.Exit(3)
	case "hang":
		time.Sleep(time.Hour)
	case "seq":
		rep["seq"] = uint64(999)
		out, _ := msgpack.Marshal(rep)
		os.Stdout.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(out))))
		os.Stdout.Write(out)
	default:
		return false
	}
	return true
}

// spoil acts out the misbehaviours that change a reply.
func spoil(how string, rep map[string]any) {
	switch how {
	case "short": // every float array one float short
		for k, v := range rep {
			if b, ok := v.([]byte); ok && len(b) >= 4 && k != "present" && k != "state" {
				rep[k] = b[:len(b)-4]
			}
		}
	case "nan":
		for k, v := range rep {
			if b, ok := v.([]byte); ok && len(b) >= 4 && k != "present" && k != "state" {
				binary.LittleEndian.PutUint32(b, math.Float32bits(float32(math.NaN())))
			}
		}
	case "error":
		rep["error"] = "the toy refuses, as asked"
	}
}

func (c *toyChild) handle(r *childReq, rep map[string]any) error {
	switch r.Op {
	case "hello":
		return c.hello(r, rep)
	case "load":
		x, present, err := c.m.LoadBatch(u64s(r.IDs))
		if err != nil {
			return err
		}
		if len(r.Keep) != len(present) {
			return fmt.Errorf("keep has %d flags for %d ids", len(r.Keep), len(present))
		}
		for i := range present {
			// A careless child may ignore keep (the adapter must not).
			present[i] = present[i] && (r.Keep[i] == 1 || os.Getenv("FOREIGN_IGNORE_KEEP") != "")
		}
		c.put(x, rep)
		rep["present"] = bools(present)
		return nil
	case "parse":
		x, err := c.m.Parse(r.Raw)
		if err != nil {
			return err
		}
		c.put(x, rep)
		return nil
	case "pick":
		x, err := c.get(r.Batch)
		if err != nil {
			return err
		}
		c.put(x.(module.Picker).Pick(ints(r.Rows)), rep)
		return nil
	}
	return c.compute(r, rep)
}

// compute serves the calls that read batches and latents.
func (c *toyChild) compute(r *childReq, rep map[string]any) error {
	w := c.m.Spec().Latent
	switch r.Op {
	case "encode", "features":
		x, err := c.get(r.Batch)
		if err != nil {
			return err
		}
		if r.Op == "features" {
			dst := make([]float32, x.Len()*c.m.FeatureLen())
			err = c.m.Features(x, dst)
			rep["x"] = f32s(dst)
			return err
		}
		mu, lv := make([]float32, x.Len()*w), make([]float32, x.Len()*w)
		err = c.m.Encode(x, mu, lv)
		rep["mu"], rep["logvar"] = f32s(mu), f32s(lv)
		return err
	case "decode":
		x, err := c.get(r.Batch)
		if err != nil {
			return err
		}
		ll, dz := make([]float32, x.Len()), make([]float32, x.Len()*w)
		err = c.m.Decode(floats32(r.Z), x, floats32(r.W), ll, dz)
		rep["ll"], rep["dz"] = f32s(ll), f32s(dz)
		return err
	case "decode_many": // a Decode per term, as docs/foreign.md allows
		x, err := c.get(r.Batch)
		if err != nil {
			return err
		}
		n := x.Len()
		z, wt := floats32(r.Z), floats32(r.W)
		if r.Terms < 1 || len(z) != r.Terms*n*w || len(wt) != r.Terms*n {
			return fmt.Errorf("decode_many of %d terms: z has %d values, w %d, for %d rows of %d", r.Terms, len(z), len(wt), n, w)
		}
		ll, dz := make([]float32, r.Terms*n), make([]float32, r.Terms*n*w)
		for t := range r.Terms {
			if err := c.m.Decode(z[t*n*w:(t+1)*n*w], x, wt[t*n:(t+1)*n], ll[t*n:(t+1)*n], dz[t*n*w:(t+1)*n*w]); err != nil {
				return err
			}
		}
		rep["ll"], rep["dz"] = f32s(ll), f32s(dz)
		return nil
	case "learn":
		return c.m.Learn(floats32(r.DMu), floats32(r.DLogVar))
	case "discard":
		c.m.Discard()
		return nil
	case "means":
		dst := make([]float32, r.N*c.m.FeatureLen())
		err := c.m.Means(floats32(r.Z), r.N, dst)
		rep["x"] = f32s(dst)
		return err
	case "render":
		out, err := c.m.Render(floats32(r.Z), r.N)
		rep["outputs"] = out
		return err
	case "save":
		var b bytes.Buffer
		err := c.m.Save(&b)
		rep["state"] = b.Bytes()
		return err
	case "restore":
		return c.m.Restore(bytes.NewReader(r.State))
	}
	return fmt.Errorf("unknown call %q", r.Op)
}

func (c *toyChild) hello(r *childReq, rep map[string]any) error {
	name, _ := r.Config["name"].(string)
	latent := toInt(r.Config["latent"])
	m, err := toy.New(toy.Config{Name: name, Dim: 5, Latent: latent, Seed: 1, DataSeed: 7, Items: 100, Missing: 0.25})
	if err != nil {
		return err
	}
	c.m = m
	rep["protocol"] = 1
	rep["spec"] = map[string]any{"name": name, "latent": latent, "likelihood": m.Spec().Likelihood, "private": 0}
	caps := []string{"learn", "load", "parse", "render", "save", "features", "pick", "decode_many"}
	if only := os.Getenv("FOREIGN_CAPS"); only != "" {
		caps = strings.Split(only, ",")
	}
	rep["capabilities"] = caps
	rep["feature_len"] = m.FeatureLen()
	return nil
}

func (c *toyChild) put(x module.Batch, rep map[string]any) {
	c.batches[c.next] = x
	rep["batch"], rep["n"] = c.next, x.Len()
	c.next++
}

func (c *toyChild) get(h uint64) (module.Batch, error) {
	x, ok := c.batches[h]
	if !ok {
		return nil, fmt.Errorf("no batch %d (freed, or never given)", h)
	}
	return x, nil
}

// toInt is a msgpack integer of whatever width it was decoded as.
func toInt(v any) int {
	switch n := v.(type) {
	case int8:
		return int(n)
	case int16:
		return int(n)
	case int32:
		return int(n)
	case int64:
		return int(n)
	case uint8:
		return int(n)
	case uint16:
		return int(n)
	case uint32:
		return int(n)
	case uint64:
		return int(n)
	}
	return 0
}

func u64s(b []byte) []uint64 {
	out := make([]uint64, len(b)/8)
	for i := range out {
		out[i] = binary.LittleEndian.Uint64(b[8*i:])
	}
	return out
}

func ints(b []byte) []int {
	out := make([]int, len(b)/4)
	for i := range out {
		out[i] = int(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

func floats32(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

func f32s(v []float32) []byte {
	out := make([]byte, 0, 4*len(v))
	for _, x := range v {
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(x))
	}
	return out
}

func bools(v []bool) []byte {
	out := make([]byte, len(v))
	for i, b := range v {
		if b {
			out[i] = 1
		}
	}
	return out
}
