package kernel

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/vfioctl/vfioctl/"

// lowFloor is what the low internal packages (kernel, sysfs, cabi,
// allocs) may import from this module: the ABI and the error vocabulary,
// and each other. Imports point down: a low package that reached up into
// vfio or ioasid would make a cycle the day those import it.
var lowFloor = []string{"uapi", "vfioerr", "internal/kernel", "internal/sysfs", "internal/cabi", "internal/allocs", "internal/records"}

// TestInternalFloors walks the module's Go files: the low internal
// packages import only lowFloor, and the test devices (internal/testdev)
// are imported by no product file, only by tests.
func TestInternalFloors(t *testing.T) {
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && rel != "." {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil && rel != "." {
				return filepath.SkipDir // another module (deviceplugin, examples/vmm)
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		checked++
		dir := filepath.ToSlash(filepath.Dir(rel))
		low := strings.HasPrefix(dir, "internal/") && !strings.HasPrefix(dir, "internal/testdev")
		isTest := strings.HasSuffix(path, "_test.go") || strings.HasPrefix(dir, "tests/")
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			own, ok := strings.CutPrefix(p, module)
			if !ok {
				continue
			}
			if low && !isTest && !allowed(own) {
				t.Errorf("%s imports %s: a low internal package imports only %v", rel, own, lowFloor)
			}
			if strings.HasPrefix(own, "internal/testdev") && !isTest && !strings.HasPrefix(dir, "internal/testdev") {
				t.Errorf("%s (product code) imports the test device %s", rel, own)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 100 {
		t.Fatalf("checked %d files: is the walk rooted at the module?", checked)
	}
}

func allowed(own string) bool {
	for _, a := range lowFloor {
		if own == a || strings.HasPrefix(own, a+"/") {
			return true
		}
	}
	return false
}
