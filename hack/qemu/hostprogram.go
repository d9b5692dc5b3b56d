package qemu

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// HostProgram gives a dynamically linked program of the host (amd64
// guests only) and the shared libraries it loads, as ldd resolves them,
// as Spec.Files entries: the program at bin/NAME, each library and the
// loader at its own path. So a guest without a root file system runs a
// program Debian builds (fio, for make bench).
func HostProgram(path string) (map[string]string, error) {
	out, err := exec.Command("ldd", path).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("qemu: ldd %s: %v: %s", path, err, out)
	}
	files, err := parseLdd(string(out))
	if err != nil {
		return nil, fmt.Errorf("qemu: ldd %s: %w", path, err)
	}
	files["bin/"+filepath.Base(path)] = path
	return files, nil
}

// parseLdd reads ldd's lines: "libz.so.1 => /lib/.../libz.so.1 (0x...)",
// the loader as "/lib64/ld-linux-x86-64.so.2 (0x...)", the vDSO with no
// path.
func parseLdd(out string) (map[string]string, error) {
	files := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.Contains(line, "not found") {
			return nil, fmt.Errorf("a library is missing: %s", line)
		}
		lib := line
		if _, after, ok := strings.Cut(line, "=>"); ok {
			lib = strings.TrimSpace(after)
		}
		lib, _, _ = strings.Cut(lib, " (")
		if strings.HasPrefix(lib, "/") {
			files[strings.TrimPrefix(lib, "/")] = lib
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no libraries listed (a static program needs no HostProgram): %q", out)
	}
	return files, nil
}
