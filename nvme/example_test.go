package nvme_test

import (
	"fmt"
	"log"
	"time"

	"github.com/vfioctl/vfioctl/nvme"
	"github.com/vfioctl/vfioctl/vfio"
)

// Read the first 4 KiB of namespace 1 of a controller bound to vfio-pci
// (vfioctl bind 0000:02:00.0), polling for the completion.
func Example() {
	h, err := vfio.Open("0000:02:00.0", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	c, err := nvme.New(h, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ns, err := c.Namespace(1)
	if err != nil {
		log.Fatal(err)
	}
	buf, err := c.TakeBuffer(4096)
	if err != nil {
		log.Fatal(err)
	}
	if err := ns.Read(c.Queue(0), 0, buf); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: % x\n", c.Identify().Model, buf.Bytes()[:16])
}

// Keep 16 random commands (70 % reads, 30 % writes that put back what
// was read) in flight on each of two queues, driven by threads pinned to
// CPUs 0 and 1, for five seconds after one second of warmup.
func ExampleNamespace_Bench() {
	h, err := vfio.Open("0000:02:00.0", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	c, err := nvme.New(h, &nvme.Options{Queues: 2, QueueDepth: 64})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ns, err := c.Namespace(1)
	if err != nil {
		log.Fatal(err)
	}
	res, err := ns.Bench(nvme.BenchOptions{Depth: 16, Queues: 2, CPUs: []int{0, 1}, Warmup: time.Second, WritePercent: 30})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res)
}
