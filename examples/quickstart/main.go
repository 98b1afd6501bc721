// Command quickstart is the smallest Go client of a serket pipeline: it asks
// a running pipeline to fuse what the language module makes of a sentence
// and to decode that latent as images, and writes them out.
//
//	make build && bin/serket up &          # the default pipeline on nats://127.0.0.1:4222
//	go run ./examples/quickstart "my trainers"
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/client"
)

func main() {
	text := "a photo of a sneaker"
	if len(os.Args) > 1 {
		text = os.Args[1]
	}
	// Connect like every serket process does: $NATS_URL or the default URL,
	// reconnecting forever once connected.
	nc, err := bus.Connect(bus.ConnConfig{Name: "quickstart", Wait: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()

	c, err := client.New(nc, "default", "quickstart")
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.WaitFor(ctx, true, "language", "vision"); err != nil {
		log.Fatal(err)
	}

	// Observe the language module, decode with the vision module: eight
	// samples of the shared latent, each rendered as a PNG.
	rep, err := c.Infer(ctx, &bus.InferRequest{
		Observations: map[string]bus.Payload{"language": {Type: "text/plain", Data: []byte(text)}},
		Want:         []string{"vision"},
		Samples:      8,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("fused from:", rep.Contributors)
	for name, why := range rep.Missing {
		fmt.Printf("without %s: %s\n", name, why)
	}
	if err := os.MkdirAll("out/quickstart", 0o755); err != nil {
		log.Fatal(err)
	}
	for i, img := range rep.Outputs["vision"] {
		path := filepath.Join("out/quickstart", fmt.Sprintf("vision-%d.png", i))
		if err := os.WriteFile(path, img.Data, 0o644); err != nil {
			log.Fatal(err)
		}
		fmt.Println("wrote", path)
	}
}
