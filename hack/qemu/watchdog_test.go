package qemu

import (
	"io"
	"strings"
	"testing"
)

// A streamed boot's output is progress for the watchdog, as an unstreamed
// one's is, and reaches the stream.
func TestResultsReaderProgress(t *testing.T) {
	for _, stream := range []*strings.Builder{nil, new(strings.Builder)} {
		progressed := make(chan struct{})
		var w io.Writer
		if stream != nil {
			w = stream
		}
		b, err := io.ReadAll(resultsReader(strings.NewReader("@@@vfioctl hello\n"), progressed, w))
		if err != nil || string(b) != "@@@vfioctl hello\n" {
			t.Fatalf("read %q, %v", b, err)
		}
		select {
		case <-progressed:
		default:
			t.Errorf("streamed %v: the first byte was not progress", stream != nil)
		}
		if stream != nil && stream.String() != "@@@vfioctl hello\n" {
			t.Errorf("the stream got %q", stream.String())
		}
	}
}
