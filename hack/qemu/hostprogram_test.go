package qemu

import (
	"os"
	"testing"
)

func TestParseLdd(t *testing.T) {
	got, err := parseLdd(`	linux-vdso.so.1 (0x00007ffc)
	libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f08e2b9e000)
	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f08e2800000)
	/lib64/ld-linux-x86-64.so.2 (0x00007f08e2be0000)
`)
	want := map[string]string{
		"lib/x86_64-linux-gnu/libz.so.1": "/lib/x86_64-linux-gnu/libz.so.1",
		"lib/x86_64-linux-gnu/libc.so.6": "/lib/x86_64-linux-gnu/libc.so.6",
		"lib64/ld-linux-x86-64.so.2":     "/lib64/ld-linux-x86-64.so.2",
	}
	if err != nil || len(got) != len(want) {
		t.Fatalf("%v, %v", got, err)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	if _, err := parseLdd("\tlibfoo.so.1 => not found\n"); err == nil {
		t.Error("a missing library was not an error")
	}
	if _, err := parseLdd("\tnot a dynamic executable\n"); err == nil {
		t.Error("a static program gave files")
	}
}

// The host's own shell: the program and the libraries it loads exist.
func TestHostProgram(t *testing.T) {
	files, err := HostProgram("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	if files["bin/sh"] != "/bin/sh" || len(files) < 3 {
		t.Fatalf("%v: want the program, libc and the loader", files)
	}
	for guest, host := range files {
		if _, err := os.Stat(host); err != nil {
			t.Errorf("%s: %v", guest, err)
		}
	}
}
