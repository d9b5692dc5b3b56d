// Package cabi reads the C ABI of the VFIO and iommufd uapi headers as the C
// compiler sees it: struct layouts from the DWARF of a compiled object,
// macros from the preprocessor, and every constant's value from a compiled
// and executed C program. The generator (uapi/internal/cmd/genuapi) and the
// conformance test (uapi/abi_test.go) both use it, so the Go side is derived
// from, and checked against, the same source of truth: the compiler. Eval
// checks headers outside uapi the same way (internal/testdev/iommufdtest).
package cabi

import (
	"bufio"
	"bytes"
	"debug/dwarf"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Headers are the uapi headers this package reads, relative to the include dir.
var Headers = []string{"linux/vfio.h", "linux/iommufd.h"}

// ABI is everything the headers define.
type ABI struct {
	Structs []*Struct
	Consts  []*Const
}

// Struct is one C struct with its layout.
type Struct struct {
	Name   string // C name without "struct "
	Header string // e.g. "linux/vfio.h"
	Line   int
	Size   int64
	Align  int64
	Fields []*Field
}

// Field is one member of a struct. Anonymous unions are flattened into one
// field named after their first member, with the others in Aliases.
type Field struct {
	Name     string // C name; for an anonymous union, its first member's
	Aliases  []string
	Offset   int64
	Size     int64 // 0 for a flexible array member
	Flexible bool  // a trailing flexible array member (T name[])
	Type     Type
}

// Type describes a field's C type in the terms the generator needs.
type Type struct {
	Kind   string // "int", "uint", "struct", "array"
	Size   int64
	Struct string // for Kind "struct": the C struct name
	Elem   *Type  // for Kind "array"
	Len    int64  // for Kind "array"
}

// Const is an object-like macro or an enumerator with its value.
type Const struct {
	Name   string
	Header string
	Line   int
	Ioctl  bool   // an _IO/_IOR/_IOW/_IOWR or an iommufd command number
	Expr   string // the macro's text as written (empty for enumerators)
	Enum   string // the enum's tag for enumerators ("" for anonymous)
	Kind   string // "uint", "int" or "string"
	Uint   uint64
	Int    int64
	String string
}

// HeaderDir returns the include directory holding sanitized kernel uapi
// headers: $VFIOCTL_KHEADERS, else what hack/qemu/kernel.sh installs from
// Debian's linux-source-6.12 (building them on first use).
func HeaderDir(repoRoot string) (string, error) {
	return kernelSH(repoRoot, "headers", "VFIOCTL_KHEADERS")
}

// SourceDir returns the Linux 6.12 source tree, for headers that are not
// uapi (drivers/iommu/iommufd/iommufd_test.h): $VFIOCTL_KSOURCE, else the
// tree hack/qemu/kernel.sh unpacks from Debian's linux-source-6.12.
func SourceDir(repoRoot string) (string, error) {
	return kernelSH(repoRoot, "source", "VFIOCTL_KSOURCE")
}

// kernelSH runs `kernel.sh target` and returns the directory it prints,
// unless the environment variable env names one.
func kernelSH(repoRoot, target, env string) (string, error) {
	if d := os.Getenv(env); d != "" {
		return d, nil
	}
	script := filepath.Join(repoRoot, "hack", "qemu", "kernel.sh")
	out, err := exec.Command(script, target).Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return "", fmt.Errorf("%s %s: %w: %s (install linux-source-6.12 or set %s)", script, target, err, msg, env)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 || f[0] != target {
		return "", fmt.Errorf("%s %s: unexpected output %q", script, target, out)
	}
	return f[1], nil
}

// Eval compiles and runs a C program that starts with prelude (its
// #includes) and prints each expression of exprs as an unsigned 64-bit
// value, with -I for each of includeDirs: sizeof, offsetof and constants of
// headers the generator does not cover, checked by tests.
func Eval(includeDirs []string, prelude string, exprs []string) ([]uint64, error) {
	tmp, err := os.MkdirTemp("", "cabi")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	var src strings.Builder
	src.WriteString("#include <stdio.h>\n#include <stddef.h>\n" + prelude + "\nint main(void) {\n")
	for _, e := range exprs {
		fmt.Fprintf(&src, "\tprintf(\"%%llu\\n\", (unsigned long long)(%s));\n", e)
	}
	src.WriteString("\treturn 0;\n}\n")
	args := []string{"-w"}
	for _, d := range includeDirs {
		args = append(args, "-I"+d)
	}
	bin := filepath.Join(tmp, "eval")
	if _, err := run(tmp, "gcc", append(args, "-x", "c", "-o", bin, "-", src.String())...); err != nil {
		return nil, err
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		return nil, fmt.Errorf("running the evaluator: %w", err)
	}
	lines := strings.Fields(string(out))
	if len(lines) != len(exprs) {
		return nil, fmt.Errorf("evaluator printed %d values for %d expressions", len(lines), len(exprs))
	}
	vals := make([]uint64, len(exprs))
	for i, l := range lines {
		if vals[i], err = strconv.ParseUint(l, 10, 64); err != nil {
			return nil, fmt.Errorf("evaluator: %s = %q: %w", exprs[i], l, err)
		}
	}
	return vals, nil
}

// Load compiles the headers in includeDir and returns their ABI.
func Load(includeDir string) (*ABI, error) {
	tmp, err := os.MkdirTemp("", "cabi")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	var inc strings.Builder
	for _, h := range Headers {
		fmt.Fprintf(&inc, "#include <%s>\n", h)
	}
	pre, err := run(tmp, "gcc", "-E", "-dD", "-I"+includeDir, "-x", "c", "-", inc.String())
	if err != nil {
		return nil, err
	}
	consts, structNames, err := scanPreprocessed(pre, includeDir)
	if err != nil {
		return nil, err
	}

	// One object whose DWARF describes every struct.
	var src strings.Builder
	src.WriteString(inc.String())
	for i, s := range structNames {
		fmt.Fprintf(&src, "struct %s cabi_v%d;\n", s, i)
	}
	obj := filepath.Join(tmp, "abi.o")
	if _, err := run(tmp, "gcc", "-g", "-O0", "-c", "-I"+includeDir, "-x", "c", "-o", obj, "-", src.String()); err != nil {
		return nil, err
	}
	structs, err := readDWARF(obj, structNames)
	if err != nil {
		return nil, err
	}

	if err := evalConsts(tmp, includeDir, inc.String(), consts); err != nil {
		return nil, err
	}
	return &ABI{Structs: structs, Consts: consts}, nil
}

func run(dir, name string, args ...string) ([]byte, error) {
	stdin := args[len(args)-1]
	cmd := exec.Command(name, args[:len(args)-1]...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args[:len(args)-1], " "), err, stderr.String())
	}
	return out, nil
}

var (
	lineMarker = regexp.MustCompile(`^# (\d+) "([^"]+)"`)
	defineRE   = regexp.MustCompile(`^#define ([A-Za-z_][A-Za-z0-9_]*)(\(?)\s*(.*)$`)
	structRE   = regexp.MustCompile(`\bstruct\s+([A-Za-z_][A-Za-z0-9_]*)\s*\{`)
	enumRE     = regexp.MustCompile(`\benum\s*([A-Za-z_][A-Za-z0-9_]*)?\s*\{([^}]*)\}`)
	ioctlRE    = regexp.MustCompile(`^_IO[RW]*\(`)
)

// scanPreprocessed walks `gcc -E -dD` output: object-like macros defined in
// our headers, enumerators, and the names of the structs they define.
func scanPreprocessed(pre []byte, includeDir string) ([]*Const, []string, error) {
	var (
		consts  []*Const
		structs []string
		seen    = map[string]bool{}
		file    string
		line    int
		body    = map[string]*strings.Builder{} // header -> its code lines
		lineOf  = map[string][]int{}            // header -> source line per body line
		iommufd = map[string]bool{}             // enums whose values are iommufd command numbers
	)
	sc := bufio.NewScanner(bytes.NewReader(pre))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		t := sc.Text()
		if m := lineMarker.FindStringSubmatch(t); m != nil {
			line, _ = strconv.Atoi(m[1])
			file = ""
			for _, h := range Headers {
				if m[2] == filepath.Join(includeDir, h) {
					file = h
				}
			}
			continue
		}
		if file == "" {
			line++
			continue
		}
		if m := defineRE.FindStringSubmatch(t); m != nil {
			name, fnlike, val := m[1], m[2] == "(", strings.TrimSpace(m[3])
			if !fnlike && val != "" && !seen[name] {
				seen[name] = true
				c := &Const{Name: name, Header: file, Line: line, Expr: val, Ioctl: ioctlRE.MatchString(val)}
				if strings.HasPrefix(val, `"`) {
					c.Kind = "string"
				}
				consts = append(consts, c)
			}
			line++
			continue
		}
		if strings.HasPrefix(t, "#") {
			line++
			continue
		}
		if body[file] == nil {
			body[file] = &strings.Builder{}
		}
		body[file].WriteString(t + "\n")
		lineOf[file] = append(lineOf[file], line)
		line++
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	for _, h := range Headers {
		if body[h] == nil {
			return nil, nil, fmt.Errorf("cabi: nothing of %s found under %s", h, includeDir)
		}
		text := body[h].String()
		lineAt := func(off int) int { return lineOf[h][strings.Count(text[:off], "\n")] }
		for _, m := range structRE.FindAllStringSubmatchIndex(text, -1) {
			name := text[m[2]:m[3]]
			if !seen["struct "+name] {
				seen["struct "+name] = true
				structs = append(structs, name)
			}
		}
		for _, m := range enumRE.FindAllStringSubmatchIndex(text, -1) {
			tag := ""
			if m[2] >= 0 {
				tag = text[m[2]:m[3]]
			}
			items := text[m[4]:m[5]]
			off := m[4]
			for _, it := range strings.Split(items, ",") {
				name := strings.TrimSpace(strings.SplitN(it, "=", 2)[0])
				if name != "" && !seen[name] {
					seen[name] = true
					c := &Const{Name: name, Header: h, Line: lineAt(off), Enum: tag}
					if strings.HasPrefix(name, "IOMMUFD_CMD_") {
						iommufd[name] = true
					}
					consts = append(consts, c)
				}
				off += len(it) + 1
			}
		}
	}
	// iommufd ioctls are macros over the IOMMUFD_CMD_ enumerators.
	for _, c := range consts {
		if strings.Contains(c.Expr, "IOMMUFD_CMD_") && strings.HasPrefix(c.Expr, "_IO") {
			c.Ioctl = true
		}
	}
	sort.SliceStable(consts, func(i, j int) bool {
		if consts[i].Header != consts[j].Header {
			return headerIndex(consts[i].Header) < headerIndex(consts[j].Header)
		}
		return consts[i].Line < consts[j].Line
	})
	return consts, structs, nil
}

func headerIndex(h string) int {
	for i, x := range Headers {
		if x == h {
			return i
		}
	}
	return len(Headers)
}

// evalConsts compiles and runs a C program printing every constant's value.
func evalConsts(tmp, includeDir, inc string, consts []*Const) error {
	var src strings.Builder
	src.WriteString("#include <stdio.h>\n" + inc + "int main(void) {\n")
	for _, c := range consts {
		if c.Kind == "string" {
			fmt.Fprintf(&src, "\tprintf(\"%s s %%s\\n\", %s);\n", c.Name, c.Name)
			continue
		}
		fmt.Fprintf(&src, "\tif ((%[1]s) < 0) printf(\"%[1]s i %%lld\\n\", (long long)(%[1]s)); else printf(\"%[1]s u %%llu\\n\", (unsigned long long)(%[1]s));\n", c.Name)
	}
	src.WriteString("\treturn 0;\n}\n")
	bin := filepath.Join(tmp, "consts")
	if _, err := run(tmp, "gcc", "-w", "-I"+includeDir, "-x", "c", "-o", bin, "-", src.String()); err != nil {
		return err
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		return fmt.Errorf("running constant printer: %w", err)
	}
	byName := map[string]*Const{}
	for _, c := range consts {
		byName[c.Name] = c
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.SplitN(l, " ", 3)
		c := byName[f[0]]
		if c == nil || len(f) != 3 {
			return fmt.Errorf("constant printer: bad line %q", l)
		}
		switch f[1] {
		case "s":
			c.String = f[2]
		case "i":
			c.Kind = "int"
			c.Int, err = strconv.ParseInt(f[2], 10, 64)
		case "u":
			c.Kind = "uint"
			c.Uint, err = strconv.ParseUint(f[2], 10, 64)
		}
		if err != nil {
			return fmt.Errorf("constant printer: %q: %w", l, err)
		}
	}
	return nil
}

// readDWARF returns the layout of each named struct from obj's DWARF.
func readDWARF(obj string, names []string) ([]*Struct, error) {
	f, err := elf.Open(obj)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d, err := f.DWARF()
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	files := map[int64]string{} // decl_file index -> header, per CU
	got := map[string]*Struct{}
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			return nil, err
		}
		if e == nil {
			break
		}
		if e.Tag == dwarf.TagCompileUnit {
			lr, err := d.LineReader(e)
			if err != nil {
				return nil, err
			}
			for i, lf := range lr.Files() {
				if lf == nil {
					continue
				}
				for _, h := range Headers {
					if strings.HasSuffix(lf.Name, "/"+h) {
						files[int64(i)] = h
					}
				}
			}
			continue
		}
		if e.Tag != dwarf.TagStructType {
			if e.Children {
				r.SkipChildren()
			}
			continue
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		if !want[name] || got[name] != nil {
			r.SkipChildren()
			continue
		}
		typ, err := d.Type(e.Offset)
		if err != nil {
			return nil, err
		}
		st, ok := typ.(*dwarf.StructType)
		if !ok || st.Incomplete {
			return nil, fmt.Errorf("struct %s: incomplete in DWARF", name)
		}
		s := &Struct{Name: name, Size: st.ByteSize}
		if fi, ok := e.Val(dwarf.AttrDeclFile).(int64); ok {
			s.Header = files[fi]
		}
		if ln, ok := e.Val(dwarf.AttrDeclLine).(int64); ok {
			s.Line = int(ln)
		}
		if s.Fields, err = fields(name, st); err != nil {
			return nil, err
		}
		got[name] = s
		r.SkipChildren()
	}
	var out []*Struct
	for _, n := range names {
		s := got[n]
		if s == nil {
			return nil, fmt.Errorf("struct %s: not in DWARF", n)
		}
		s.Align = alignOf(s, got)
		out = append(out, s)
	}
	return out, nil
}

func fields(sname string, st *dwarf.StructType) ([]*Field, error) {
	var out []*Field
	for i, m := range st.Field {
		if m.BitSize != 0 {
			return nil, fmt.Errorf("struct %s: bitfield %s is not supported", sname, m.Name)
		}
		f := &Field{Name: m.Name, Offset: m.ByteOffset}
		t := dwarf.Type(m.Type)
		if u, ok := unqual(t).(*dwarf.StructType); ok && u.Kind == "union" && m.Name == "" {
			// Anonymous union: the first member stands for all; the
			// members must all have the union's size.
			if len(u.Field) == 0 {
				return nil, fmt.Errorf("struct %s: empty union", sname)
			}
			f.Name = u.Field[0].Name
			for _, a := range u.Field[1:] {
				f.Aliases = append(f.Aliases, a.Name)
			}
			t = u.Field[0].Type
			if unqual(t).Size() != u.ByteSize {
				return nil, fmt.Errorf("struct %s: union member %s is smaller than the union", sname, f.Name)
			}
		}
		ct, err := convert(t)
		if err != nil {
			return nil, fmt.Errorf("struct %s field %s: %w", sname, f.Name, err)
		}
		f.Type = ct
		f.Size = ct.Size
		if ct.Kind == "array" && ct.Len < 0 {
			if i != len(st.Field)-1 {
				return nil, fmt.Errorf("struct %s: flexible array %s is not last", sname, f.Name)
			}
			f.Flexible, f.Size = true, 0
		}
		out = append(out, f)
	}
	return out, nil
}

func unqual(t dwarf.Type) dwarf.Type {
	for {
		switch x := t.(type) {
		case *dwarf.TypedefType:
			t = x.Type
		case *dwarf.QualType:
			t = x.Type
		default:
			return t
		}
	}
}

func convert(t dwarf.Type) (Type, error) {
	switch x := unqual(t).(type) {
	case *dwarf.UintType:
		return Type{Kind: "uint", Size: x.ByteSize}, nil
	case *dwarf.IntType:
		return Type{Kind: "int", Size: x.ByteSize}, nil
	case *dwarf.CharType:
		return Type{Kind: "int", Size: 1}, nil
	case *dwarf.UcharType:
		return Type{Kind: "uint", Size: 1}, nil
	case *dwarf.EnumType:
		for _, v := range x.Val {
			if v.Val < 0 {
				return Type{Kind: "int", Size: x.ByteSize}, nil
			}
		}
		return Type{Kind: "uint", Size: x.ByteSize}, nil
	case *dwarf.PtrType:
		// A user pointer: 8 bytes on every 64-bit ABI we build for.
		return Type{Kind: "uint", Size: x.ByteSize}, nil
	case *dwarf.StructType:
		if x.StructName == "" || x.Kind != "struct" {
			return Type{}, fmt.Errorf("anonymous %s is not supported", x.Kind)
		}
		return Type{Kind: "struct", Size: x.ByteSize, Struct: x.StructName}, nil
	case *dwarf.ArrayType:
		e, err := convert(x.Type)
		if err != nil {
			return Type{}, err
		}
		n := x.Count
		if n < 0 || (n == 0 && x.ByteSize <= 0) {
			n = -1
		}
		size := int64(0)
		if n > 0 {
			size = n * e.Size
		}
		return Type{Kind: "array", Size: size, Elem: &e, Len: n}, nil
	default:
		return Type{}, fmt.Errorf("unsupported C type %s", t)
	}
}

func alignOf(s *Struct, all map[string]*Struct) int64 {
	a := int64(1)
	for _, f := range s.Fields {
		t := f.Type
		for t.Kind == "array" {
			t = *t.Elem
		}
		fa := t.Size
		if t.Kind == "struct" {
			fa = alignOf(all[t.Struct], all)
		}
		if fa > a {
			a = fa
		}
	}
	return a
}

// GoName turns a C identifier into the exported Go name used in package
// uapi: vfio_region_info -> VfioRegionInfo, __reserved -> Reserved.
func GoName(c string) string {
	var b strings.Builder
	for _, part := range strings.Split(strings.Trim(c, "_"), "_") {
		if part == "" {
			continue
		}
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

// GoFieldNames returns the Go name of each field of s, in order; names that
// would collide get a numeric suffix. Flexible array members are included
// (the generator documents them but emits no field).
func GoFieldNames(s *Struct) []string {
	used := map[string]int{}
	out := make([]string, len(s.Fields))
	for i, f := range s.Fields {
		n := GoName(f.Name)
		if used[n]++; used[n] > 1 {
			n = fmt.Sprintf("%s%d", n, used[n])
		}
		out[i] = n
	}
	return out
}

// Layout is what a compiled C program reports with sizeof and offsetof.
type Layout struct {
	Size    map[string]int64            // struct -> sizeof
	Offsets map[string]map[string]int64 // struct -> field -> offsetof
}

// Offsets compiles and runs a program printing sizeof of every struct and
// offsetof of every field, independently of the DWARF reader.
func Offsets(includeDir string, abi *ABI) (*Layout, error) {
	tmp, err := os.MkdirTemp("", "cabi")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	var src strings.Builder
	src.WriteString("#include <stdio.h>\n#include <stddef.h>\n")
	for _, h := range Headers {
		fmt.Fprintf(&src, "#include <%s>\n", h)
	}
	src.WriteString("int main(void) {\n")
	for _, s := range abi.Structs {
		fmt.Fprintf(&src, "\tprintf(\"%[1]s - %%zu\\n\", sizeof(struct %[1]s));\n", s.Name)
		for _, f := range s.Fields {
			fmt.Fprintf(&src, "\tprintf(\"%[1]s %[2]s %%zu\\n\", offsetof(struct %[1]s, %[2]s));\n", s.Name, f.Name)
		}
	}
	src.WriteString("\treturn 0;\n}\n")
	bin := filepath.Join(tmp, "layout")
	if _, err := run(tmp, "gcc", "-w", "-I"+includeDir, "-x", "c", "-o", bin, "-", src.String()); err != nil {
		return nil, err
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		return nil, fmt.Errorf("running layout printer: %w", err)
	}
	l := &Layout{Size: map[string]int64{}, Offsets: map[string]map[string]int64{}}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("layout printer: bad line %q", line)
		}
		v, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("layout printer: %q: %w", line, err)
		}
		if f[1] == "-" {
			l.Size[f[0]] = v
			continue
		}
		if l.Offsets[f[0]] == nil {
			l.Offsets[f[0]] = map[string]int64{}
		}
		l.Offsets[f[0]][f[1]] = v
	}
	return l, nil
}
