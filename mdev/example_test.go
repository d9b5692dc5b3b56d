package mdev_test

import (
	"fmt"
	"log"

	"github.com/vfioctl/vfioctl/mdev"
	"github.com/vfioctl/vfioctl/vfio"
)

// A dual-port mtty, opened through its own cdev and removed again.
// (Compiled, not run: it needs the kernel's mtty sample loaded.)
func ExampleCreate() {
	d, err := mdev.Create("mtty", "mtty-2", "")
	if err != nil {
		log.Fatal(err)
	}
	h, err := vfio.Open(d.UUID, &vfio.Options{Backend: vfio.Cdev})
	if err != nil {
		log.Fatal(err)
	}
	bar, err := h.Device().Region(vfio.BAR0Region)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("UART of", bar.Size, "bytes")
	h.Close()
	if err := mdev.Remove(d.UUID); err != nil {
		log.Fatal(err)
	}
}

// An mtty made again at every boot, as mdevctl define does: the boot hooks
// (vfioctl persist install) call Start. (Compiled, not run.)
func ExampleDefine() {
	d, err := mdev.Create("mtty", "mtty-2", "")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := mdev.Define("mtty", "mtty-2", d.UUID); err != nil {
		log.Fatal(err)
	}
	started, err := mdev.Start("") // at boot: creates what is defined and missing
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range started {
		fmt.Println(s.UUID, s.Result) // d.UUID exists
	}
}
