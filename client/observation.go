package client

import (
	"mime"
	"path/filepath"
	"strings"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/internal/boundedread"
)

// ReadObservation reads the file at path as one observation, its media type
// from its extension (application/octet-stream when unknown). It refuses,
// before reading it, a file larger than bus.MaxObservationBytes (what one
// request carries) and anything but a regular file: /dev/zero, a FIFO
// (whose open would wait for a writer) and a sparse file of gigabytes cost
// neither time nor memory. Its errors name the file and the limit.
func ReadObservation(path string) (bus.Payload, error) {
	data, err := boundedread.File(path, bus.MaxObservationBytes)
	if err != nil {
		return bus.Payload{}, err
	}
	return bus.Payload{Type: MediaType(path), Data: data}, nil
}

// MediaType is the media type of the file at path by its extension, in
// any case; application/octet-stream when the extension is unknown.
func MediaType(path string) string {
	if t := mime.TypeByExtension(strings.ToLower(filepath.Ext(path))); t != "" {
		return t
	}
	return "application/octet-stream"
}
