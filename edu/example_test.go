package edu_test

import (
	"fmt"
	"log"

	"github.com/vfioctl/vfioctl/dma"
	"github.com/vfioctl/vfioctl/edu"
	"github.com/vfioctl/vfioctl/vfio"
)

// A DMA round trip through the IOMMU: a buffer mapped at IOVA 0x100000
// goes to the device's internal buffer and back. (Compiled, not run: it
// needs an edu device bound to vfio-pci.)
func ExampleEdu_Roundtrip() {
	h, err := vfio.Open("0000:00:03.0", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	e, err := edu.Open(h.Device())
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()
	buf, err := dma.CreateBuffer(8192)
	if err != nil {
		log.Fatal(err)
	}
	defer buf.Close()
	if err := h.Mapper().Map(0x100000, buf.Bytes(), dma.ReadWrite); err != nil {
		log.Fatal(err)
	}
	if err := e.Roundtrip(buf, 0x100000, edu.MaxDMA); err != nil {
		log.Fatal(err)
	}
	fmt.Println("round trip done")
}
