package client_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/client"
	"github.com/serket-go/serket/integrator"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/mvae"
	"github.com/serket-go/serket/modules/vision"
)

const latent = 8

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// pipeline runs an integrator and a vision module on the server at url,
// each on its own connection as separate processes would be, and returns a
// client of it once both are live.
func pipeline(t *testing.T, url string) *client.Client {
	t.Helper()
	conn := func(name string) *nats.Conn {
		nc, err := bus.Connect(bus.ConnConfig{URL: url, Name: name, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	v, err := vision.New(vision.Config{Net: mvae.Config{Latent: latent, Hidden: 16, Seed: 1}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() {
		done <- integrator.Run(ctx, integrator.Config{Conn: conn("integrator"), Latent: latent, Logger: quiet,
			Deadline: 20 * time.Second, Discovery: 100 * time.Millisecond})
	}()
	go func() { done <- module.Run(ctx, v, module.Options{Conn: conn("vision"), Logger: quiet}) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("pipeline: %v", err)
			}
		}
	})
	c, err := client.New(conn("client"), "", "test")
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if _, err := c.WaitFor(wctx, true, "vision"); err != nil {
		t.Fatal(err)
	}
	return c
}

// photo is a real PNG image of exactly size bytes: a 640×480 picture with
// a tEXt comment chunk (which decoders skip) making up the rest.
func photo(t *testing.T, size int) []byte {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, 640, 480))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 7 % 251)
	}
	img.SetGray(320, 240, color.Gray{Y: 255})
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	raw := b.Bytes()
	iend := slices.Clone(raw[len(raw)-12:]) // the last chunk, IEND, holds no data
	text := append([]byte("Comment\x00"), bytes.Repeat([]byte{'x'}, size-len(raw)-12-8)...)
	chunk := binary.BigEndian.AppendUint32(nil, uint32(len(text)))
	chunk = append(append(chunk, "tEXt"...), text...)
	chunk = binary.BigEndian.AppendUint32(chunk, crc32.ChecksumIEEE(chunk[4:]))
	out := append(append(raw[:len(raw)-12], chunk...), iend...)
	if len(out) != size {
		t.Fatalf("built a PNG of %d bytes, want %d", len(out), size)
	}
	return out
}

func infer(c *client.Client, data []byte) (*bus.InferReply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.Infer(ctx, &bus.InferRequest{Observations: map[string]bus.Payload{"vision": {Type: "image/png", Data: data}}, Want: []string{"vision"}})
}

// TestInferImageSizeLimit: on the embedded server, a photo of
// bus.MaxObservationBytes (32 MiB, docs/usage.md's limit) travels from the
// client through the integrator to the vision module, which fits it and
// contributes; a byte more is refused by the client before it is sent,
// with the sizes and the limit.
func TestInferImageSizeLimit(t *testing.T) {
	srv, err := bus.StartServer(bus.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	c := pipeline(t, srv.ClientURL())
	const limit = 32 << 20
	rep, err := infer(c, photo(t, limit))
	if err != nil {
		t.Fatalf("a photo of 32 MiB: %v", err)
	}
	if !slices.Contains(rep.Contributors, "vision") || len(rep.Outputs["vision"]) != 1 {
		t.Fatalf("a photo of 32 MiB: contributors %v, missing %v, %d outputs", rep.Contributors, rep.Missing, len(rep.Outputs["vision"]))
	}
	_, err = infer(c, photo(t, limit+1))
	if !errors.Is(err, bus.ErrTooLarge) || !strings.Contains(err.Error(), "vision: 32.0 MiB (33554433 bytes)") || !strings.Contains(err.Error(), "at most 32 MiB") {
		t.Fatalf("a photo of 32 MiB + 1 byte: %v, want a refusal giving its size and the 32 MiB limit", err)
	}
}

// startNATS starts a nats-server of one's own, with its max_payload.
func startNATS(t *testing.T, maxPayload int32) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true, MaxPayload: maxPayload})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return ns
}

// TestInferReplyOverServerMaxPayload: a reply larger than a server of
// one's own takes (1024 latent samples: 32 KiB, on a server of 16 KiB) is
// refused by the integrator with an error the client gets at once, naming
// the limit, rather than lost on the way, leaving the client to wait out
// its deadline.
func TestInferReplyOverServerMaxPayload(t *testing.T) {
	c := pipeline(t, startNATS(t, 16<<10).ClientURL())
	img := image.NewGray(image.Rect(0, 0, 28, 28))
	img.SetGray(14, 14, color.Gray{Y: 255})
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Infer(ctx, &bus.InferRequest{Observations: map[string]bus.Payload{"vision": {Type: "image/png", Data: b.Bytes()}}, Samples: 1024})
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "message too large") || !strings.Contains(err.Error(), "the limit is 16384") {
		t.Fatalf("a reply of 32 KiB on a server of 16 KiB: %v, want the integrator's refusal naming the limit", err)
	}
}

// TestInferServerMaxPayload: against a NATS server of one's own, the
// client holds to the max_payload the server advertises: a 3 MB photo
// goes through a server that takes 4 MiB, and is refused before it is sent
// by one that takes nats-server's default 1 MiB, with an error that names
// the server's limit and serket's.
func TestInferServerMaxPayload(t *testing.T) {
	for _, tt := range []struct {
		name       string
		maxPayload int32
		wantErr    string
	}{
		{"4 MiB", 4 << 20, ""},
		{"1 MiB", 1 << 20, "takes messages of at most 1 MiB (its max_payload): raise its max_payload to 32.1 MiB"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := pipeline(t, startNATS(t, tt.maxPayload).ClientURL())
			rep, err := infer(c, photo(t, 3_000_000))
			if tt.wantErr == "" {
				if err != nil || !slices.Contains(rep.Contributors, "vision") {
					t.Fatalf("a 3 MB photo: %v (reply %+v)", err, rep)
				}
				return
			}
			if !errors.Is(err, bus.ErrTooLarge) || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "vision: 2.9 MiB") {
				t.Fatalf("a 3 MB photo: %v, want a refusal containing %q and the photo's size", err, tt.wantErr)
			}
		})
	}
}
