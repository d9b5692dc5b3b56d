package vfio

import (
	"errors"
	"time"

	"github.com/vfioctl/vfioctl/vfioerr"
)

// WatchRequests watches the device's request interrupt (ReqIRQ). vfio-pci
// signals it when the kernel wants the device back: it is being removed
// (echo 1 > /sys/bus/pci/devices/BDF/remove, a hot unplug) or unbound from
// vfio-pci. The removal then waits until every holder has closed the
// device, asking again every 10 seconds; a holder with no handler blocks
// it for as long as it keeps the device open. fn runs on a goroutine of its
// own at each request; it should stop using the device and Close it (the
// Handle, or the Device). stop ends the watch; it does not wait for an fn
// in progress, and it is safe to call after the device is closed.
func (d *Device) WatchRequests(fn func()) (stop func() error, err error) {
	ev, err := CreateEventfd()
	if err != nil {
		return nil, err
	}
	if err := d.SetEventfds(ReqIRQ, 0, ev); err != nil {
		ev.Close()
		return nil, err
	}
	go func() {
		for {
			n, err := ev.Wait(time.Hour)
			if err != nil {
				return // closed by stop
			}
			if n > 0 {
				fn()
			}
		}
	}()
	return func() error {
		err := d.DisableIRQ(ReqIRQ)
		if errors.Is(err, vfioerr.ErrClosed) {
			err = nil // closing the device tore the trigger down already
		}
		return errors.Join(err, ev.Close())
	}, nil
}
