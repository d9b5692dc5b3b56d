package qemu

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// bootRetrying boots spec with boot and, when the machine failed rather
// than a test (machineFailed), once more, saying why through logf. The
// failed boot's logs stay beside the retry's. A caller's NVMe image is put
// back as it was before the first boot: the retry's tests find the host's
// data, not what the failed boot's tests wrote.
func bootRetrying(spec Spec, boot func(Spec) (*Result, error), logf func(format string, args ...any)) (*Result, error) {
	restore := func() error { return nil }
	if spec.NVMeImage != "" {
		saved, err := saveImage(spec.NVMeImage)
		if err != nil {
			return nil, err
		}
		defer os.Remove(saved)
		restore = func() error { return copyFile(spec.NVMeImage, saved) }
	}
	res, err := boot(spec)
	if err != nil {
		return nil, err
	}
	why := machineFailed(res)
	if why == "" {
		return res, nil
	}
	kept := strings.TrimSuffix(res.ConsoleLog, ".console.log") + ".failed.console.log"
	_ = os.Rename(res.ConsoleLog, kept)
	saveResults(res, ".failed")
	if err := restore(); err != nil {
		return nil, fmt.Errorf("putting back the nvme image before booting again: %w", err)
	}
	logf("boot %s/%s: %s (console log %s): booting it again, once", spec.Kernel, spec.Profile, why, kept)
	return boot(spec)
}

// saveImage copies the image at path beside it and returns the copy's path.
func saveImage(path string) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".before-boot-*")
	if err != nil {
		return "", fmt.Errorf("saving the nvme image: %w", err)
	}
	saved := f.Name()
	f.Close()
	if err := copyFile(saved, path); err != nil {
		os.Remove(saved)
		return "", fmt.Errorf("saving the nvme image: %w", err)
	}
	return saved, nil
}

// copyFile makes dst's content src's.
func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
