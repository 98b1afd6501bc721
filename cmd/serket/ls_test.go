package main

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/png"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/integrator"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/fmnist3"
)

// serket ls shows streaming modules' rates, the age of their latest
// posterior and their bad sensor messages, and the integrator's beliefs.
func TestLsShowsStreaming(t *testing.T) {
	data := datasettest.Dir(t)
	m, err := fmnist3.Open(data, 64, 32)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := bus.StartServer(bus.ServerConfig{Host: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	stop, err := m.Serve(context.Background(), srv.ClientURL(), map[string]module.Options{"vision": {Sensors: []string{"robot.camera"}, SensorType: "image/png"}}, &integrator.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var img bytes.Buffer
	png.Encode(&img, image.NewGray(image.Rect(0, 0, 28, 28)))
	send := func(data []byte) {
		msg := nats.NewMsg("robot.camera")
		msg.Data = data
		msg.Header.Set(bus.HeaderTime, strconv.FormatInt(time.Now().UnixNano(), 10))
		nc.PublishMsg(msg)
		nc.Flush()
	}
	send(img.Bytes())
	send([]byte("not an image"))
	// Latest wins: a frame sent before the module parsed the bad message
	// would replace it uncounted. Wait until the module has counted it.
	subj, _ := bus.NewSubjects("")
	deadline := time.Now().Add(10 * time.Second)
	for {
		msg, err := nc.Request(subj.TrainStatus("vision"), nil, time.Second)
		var st struct {
			Stream struct{ Bad int } `json:"stream"`
		}
		if err == nil && json.Unmarshal(msg.Data, &st) == nil && st.Stream.Bad > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the vision module never counted the bad sensor message")
		}
		time.Sleep(10 * time.Millisecond) // polls the module's counters
	}
	done := make(chan struct{})
	go func() { // a camera at about 50 Hz while ls measures
		defer close(done)
		for range 100 {
			send(img.Bytes())
			time.Sleep(20 * time.Millisecond) // the camera's frame period
		}
	}()
	out, err := serketOut(t, "ls", "--nats", srv.ClientURL(), "--rate", "500ms")
	<-done
	if err != nil {
		t.Fatalf("serket ls: %v\n%s", err, out)
	}
	t.Logf("\n%s", out)
	var vision, ig string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "vision ") && strings.Contains(line, "posteriors") {
			vision = line
		}
		if strings.HasPrefix(line, "integrator ") && strings.Contains(line, "beliefs") {
			ig = line
		}
	}
	if !strings.Contains(out, "streaming (over 500ms)") || vision == "" || ig == "" {
		t.Fatalf("no streaming table with vision and the integrator:\n%s", out)
	}
	f := strings.Fields(vision)
	if rate, _ := strconv.ParseFloat(strings.TrimSuffix(f[2], "/s"), 64); rate < 5 || !strings.Contains(vision, "robot.camera") {
		t.Errorf("vision's row %q: want a posterior rate of tens per second and its last bad message named", vision)
	}
}
