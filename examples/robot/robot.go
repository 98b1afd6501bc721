// Command robot is a simulated robot perceiving with serket: a camera, a
// microphone and a keyboard publish what the robot senses on their own NATS
// subjects, at their own rates, with jitter and dropouts; the vision, audio
// and language modules turn each message into a timestamped posterior
// (streaming perception), the integrator fuses the latest of each into a
// belief, and the language module says what the robot believes it sees. The
// robot looks at one object at a time and moves on to another every few
// seconds; this program scores the beliefs against the object in view and
// prints the sensor-to-belief latency percentiles and the recognition
// accuracy.
//
// By default it runs the whole pipeline in this process (an embedded NATS
// server, the three modules and the integrator as goroutines) from a trained
// model's checkpoints:
//
//	bin/serket train --epochs 5 --plan cross          # or make demo (out/demo/run)
//	go run ./examples/robot --checkpoint runs/latest
//
// or against a pipeline started with the file beside this one:
//
//	SERKET_CHECKPOINT_DIR=runs/latest bin/serket up examples/robot/pipeline.yaml &
//	go run ./examples/robot --nats nats://127.0.0.1:4222
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"
)

func main() {
	var cfg Config
	flag.StringVar(&cfg.NATS, "nats", "", "a running pipeline's NATS URL (started with examples/robot/pipeline.yaml); empty: run the pipeline in this process")
	flag.StringVar(&cfg.Checkpoint, "checkpoint", "runs/latest", "the trained model (in-process pipeline)")
	flag.StringVar(&cfg.Data, "data", "data/fmnist3", "the prepared dataset (test images and the modules' settings)")
	flag.DurationVar(&cfg.Duration, "duration", 30*time.Second, "how long the robot runs")
	flag.Float64Var(&cfg.CameraHz, "camera-hz", 5, "camera frames per second")
	flag.Float64Var(&cfg.MicHz, "mic-hz", 1, "utterances per second")
	flag.Float64Var(&cfg.KeyboardHz, "keyboard-hz", 0.5, "typed words per second")
	flag.Float64Var(&cfg.Jitter, "jitter", 0.3, "timing jitter, as a fraction of each sensor's period")
	flag.Float64Var(&cfg.Dropout, "dropout", 0.2, "fraction of sensor messages lost")
	flag.DurationVar(&cfg.Dwell, "dwell", 4*time.Second, "how long the robot looks at one object")
	flag.Parse()
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	res, err := Run(ctx, cfg, func(format string, args ...any) { fmt.Printf(format+"\n", args...) })
	if err != nil {
		log.Fatal(err)
	}
	res.Print(os.Stdout)
}
