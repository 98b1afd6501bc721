// Command quickstart is the smallest Go client of a serket pipeline: it asks
// a running pipeline (`serket up`, or `make up`) to fuse an observation of
// one module and decode it with the others, and prints what came back.
//
//	serket up &                  # the default pipeline on nats://127.0.0.1:4222
//	go run ./examples/quickstart
package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/client"
)

func main() {
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
	if _, err := c.WaitFor(ctx, true, "left", "right", "top"); err != nil {
		log.Fatal(err)
	}

	// Observe module "left" (the toy modality takes 8 numbers as text) and
	// ask "right" and "top" for what they make of the shared latent.
	rep, err := c.Infer(ctx, &bus.InferRequest{
		Observations: map[string]bus.Payload{
			"left": {Type: "text/plain", Data: []byte("1.2 -0.3 -1.5 0.3 1.1 0.1 -0.4 0.9")},
		},
		Want:    []string{"right", "top"},
		Samples: 3, // decode three samples of z; 0 decodes the fused mean
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("fused from:", rep.Contributors)
	for name, why := range rep.Missing {
		fmt.Printf("without %s: %s\n", name, why)
	}
	fmt.Println("latent mean:", rep.Mu.Data)
	for _, name := range []string{"right", "top"} {
		for i, out := range rep.Outputs[name] {
			fmt.Printf("%s sample %d: %s\n", name, i, out.Data)
		}
	}
}
