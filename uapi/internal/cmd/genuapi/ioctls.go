package main

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"github.com/vfioctl/vfioctl/internal/cabi"
)

// What an ioctl's third argument is. The kinds decide the shape of the
// typed helper genuapi writes for it.
const (
	argNone   = "none"   // no argument
	argValue  = "value"  // an integer passed by value
	argInt32  = "int32"  // a pointer to one int32 (an fd)
	argUint32 = "uint32" // a pointer to one uint32
	argString = "string" // a NUL-terminated string
	argStruct = "struct" // a fixed-size struct starting with its size (argsz or size)
	argBuffer = "buffer" // a struct header followed by variable data; argsz covers both
)

type ioctlArg struct {
	kind   string
	cType  string // C struct name, for struct and buffer
	goType string // Go type name for structs kept by hand (after 6.12)
	// returns: the ioctl's non-negative return value means something, so
	// the struct helper returns it too: VFIO_EEH_PE_OP's GET_STATE answers
	// with it, and the SPAPR TCE container answers a map or unmap whose
	// IOVA or address fails its parameter check with 1 and no errno.
	returns bool
}

// ioctlArgs says what every ioctl takes; genuapi fails when an ioctl of the
// headers (or one of newer_linux.go) is missing here, or when a struct does
// not start with its 32-bit size.
var ioctlArgs = map[string]ioctlArg{
	"VFIO_GET_API_VERSION":               {kind: argNone},
	"VFIO_CHECK_EXTENSION":               {kind: argValue},
	"VFIO_SET_IOMMU":                     {kind: argValue},
	"VFIO_GROUP_GET_STATUS":              {kind: argStruct, cType: "vfio_group_status"},
	"VFIO_GROUP_SET_CONTAINER":           {kind: argInt32},
	"VFIO_GROUP_UNSET_CONTAINER":         {kind: argNone},
	"VFIO_GROUP_GET_DEVICE_FD":           {kind: argString},
	"VFIO_DEVICE_GET_INFO":               {kind: argBuffer, cType: "vfio_device_info"},
	"VFIO_DEVICE_GET_REGION_INFO":        {kind: argBuffer, cType: "vfio_region_info"},
	"VFIO_DEVICE_GET_IRQ_INFO":           {kind: argStruct, cType: "vfio_irq_info"},
	"VFIO_DEVICE_SET_IRQS":               {kind: argBuffer, cType: "vfio_irq_set"},
	"VFIO_DEVICE_RESET":                  {kind: argNone},
	"VFIO_DEVICE_GET_PCI_HOT_RESET_INFO": {kind: argBuffer, cType: "vfio_pci_hot_reset_info"},
	"VFIO_DEVICE_PCI_HOT_RESET":          {kind: argBuffer, cType: "vfio_pci_hot_reset"},
	"VFIO_DEVICE_QUERY_GFX_PLANE":        {kind: argStruct, cType: "vfio_device_gfx_plane_info"},
	"VFIO_DEVICE_GET_GFX_DMABUF":         {kind: argUint32},
	"VFIO_DEVICE_IOEVENTFD":              {kind: argStruct, cType: "vfio_device_ioeventfd"},
	"VFIO_DEVICE_FEATURE":                {kind: argBuffer, cType: "vfio_device_feature"},
	"VFIO_DEVICE_BIND_IOMMUFD":           {kind: argStruct, cType: "vfio_device_bind_iommufd"},
	"VFIO_DEVICE_ATTACH_IOMMUFD_PT":      {kind: argStruct, cType: "vfio_device_attach_iommufd_pt"},
	"VFIO_DEVICE_DETACH_IOMMUFD_PT":      {kind: argStruct, cType: "vfio_device_detach_iommufd_pt"},
	"VFIO_MIG_GET_PRECOPY_INFO":          {kind: argStruct, cType: "vfio_precopy_info"},
	"VFIO_IOMMU_GET_INFO":                {kind: argBuffer, cType: "vfio_iommu_type1_info"},
	"VFIO_IOMMU_MAP_DMA":                 {kind: argStruct, cType: "vfio_iommu_type1_dma_map", returns: true},
	// The dirty-bitmap form of unmap appends a bitmap: use the buffer of
	// VFIO_IOMMU_DIRTY_PAGES' shape by hand if ever needed.
	"VFIO_IOMMU_UNMAP_DMA":               {kind: argStruct, cType: "vfio_iommu_type1_dma_unmap", returns: true},
	"VFIO_IOMMU_ENABLE":                  {kind: argNone},
	"VFIO_IOMMU_DISABLE":                 {kind: argNone},
	"VFIO_IOMMU_DIRTY_PAGES":             {kind: argBuffer, cType: "vfio_iommu_type1_dirty_bitmap"},
	"VFIO_IOMMU_SPAPR_TCE_GET_INFO":      {kind: argStruct, cType: "vfio_iommu_spapr_tce_info"},
	"VFIO_EEH_PE_OP":                     {kind: argStruct, cType: "vfio_eeh_pe_op", returns: true},
	"VFIO_IOMMU_SPAPR_REGISTER_MEMORY":   {kind: argStruct, cType: "vfio_iommu_spapr_register_memory"},
	"VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY": {kind: argStruct, cType: "vfio_iommu_spapr_register_memory"},
	"VFIO_IOMMU_SPAPR_TCE_CREATE":        {kind: argStruct, cType: "vfio_iommu_spapr_tce_create"},
	"VFIO_IOMMU_SPAPR_TCE_REMOVE":        {kind: argStruct, cType: "vfio_iommu_spapr_tce_remove"},

	"IOMMU_DESTROY":                 {kind: argStruct, cType: "iommu_destroy"},
	"IOMMU_IOAS_ALLOC":              {kind: argStruct, cType: "iommu_ioas_alloc"},
	"IOMMU_IOAS_IOVA_RANGES":        {kind: argStruct, cType: "iommu_ioas_iova_ranges"},
	"IOMMU_IOAS_ALLOW_IOVAS":        {kind: argStruct, cType: "iommu_ioas_allow_iovas"},
	"IOMMU_IOAS_MAP":                {kind: argStruct, cType: "iommu_ioas_map"},
	"IOMMU_IOAS_COPY":               {kind: argStruct, cType: "iommu_ioas_copy"},
	"IOMMU_IOAS_UNMAP":              {kind: argStruct, cType: "iommu_ioas_unmap"},
	"IOMMU_OPTION":                  {kind: argStruct, cType: "iommu_option"},
	"IOMMU_VFIO_IOAS":               {kind: argStruct, cType: "iommu_vfio_ioas"},
	"IOMMU_HWPT_ALLOC":              {kind: argStruct, cType: "iommu_hwpt_alloc"},
	"IOMMU_GET_HW_INFO":             {kind: argStruct, cType: "iommu_hw_info"},
	"IOMMU_HWPT_SET_DIRTY_TRACKING": {kind: argStruct, cType: "iommu_hwpt_set_dirty_tracking"},
	"IOMMU_HWPT_GET_DIRTY_BITMAP":   {kind: argStruct, cType: "iommu_hwpt_get_dirty_bitmap"},
	"IOMMU_HWPT_INVALIDATE":         {kind: argStruct, cType: "iommu_hwpt_invalidate"},
	"IOMMU_FAULT_QUEUE_ALLOC":       {kind: argStruct, cType: "iommu_fault_alloc"},

	// After 6.12: the structs are kept by hand in newer_linux.go, each
	// starting with its size like every iommufd struct.
	"IOMMU_IOAS_MAP_FILE":       {kind: argStruct, goType: "IommuIoasMapFile"},
	"IOMMU_VIOMMU_ALLOC":        {kind: argStruct, goType: "IommuViommuAlloc"},
	"IOMMU_VDEVICE_ALLOC":       {kind: argStruct, goType: "IommuVdeviceAlloc"},
	"IOMMU_IOAS_CHANGE_PROCESS": {kind: argStruct, goType: "IommuIoasChangeProcess"},
	"IOMMU_VEVENTQ_ALLOC":       {kind: argStruct, goType: "IommuVeventqAlloc"},
	"IOMMU_HW_QUEUE_ALLOC":      {kind: argStruct, goType: "IommuHwQueueAlloc"},
}

// newerIoctls are the ioctls of newer_linux.go (not in the 6.12 headers),
// with the Linux version that added each.
var newerIoctls = map[string]string{
	"IOMMU_IOAS_MAP_FILE":       "maps a range of a memfd into an IOAS (Linux 6.13).",
	"IOMMU_VIOMMU_ALLOC":        "allocates a virtual IOMMU on a nesting-parent HWPT (Linux 6.13).",
	"IOMMU_VDEVICE_ALLOC":       "gives a device a guest-visible ID on a vIOMMU (Linux 6.13).",
	"IOMMU_IOAS_CHANGE_PROCESS": "moves the pinned-page accounting to the calling process (Linux 6.14).",
	"IOMMU_VEVENTQ_ALLOC":       "allocates a queue of vIOMMU events, returning its id and fd (Linux 6.15).",
	"IOMMU_HW_QUEUE_ALLOC":      "hands a vIOMMU hardware queue to user space (Linux 6.17).",
}

// helperName is the Go name of an ioctl's helper: IOMMU_IOAS_MAP -> IoctlIommuIoasMap.
func helperName(ioctl string) string { return "Ioctl" + cabi.GoName(strings.ToLower(ioctl)) }

// genIoctls writes one typed function per ioctl. Each fills the struct's
// size field itself and passes the argument to the system call as an
// unsafe.Pointer, never as a uintptr through a Go call (unsafe rule 4).
func genIoctls(abi *cabi.ABI, structs map[string]*cabi.Struct) ([]byte, error) {
	var names []string
	seen := map[string]bool{}
	for _, c := range abi.Consts {
		if c.Ioctl {
			names = append(names, c.Name)
			seen[c.Name] = true
		}
	}
	for n := range newerIoctls {
		names = append(names, n)
		seen[n] = true
	}
	sort.Strings(names)
	var problems []string
	for n := range ioctlArgs {
		if !seen[n] {
			problems = append(problems, n+": in ioctlArgs but not in the headers")
		}
	}
	var b bytes.Buffer
	b.WriteString(banner + "package uapi\n\nimport (\n\t\"unsafe\"\n\n\t\"golang.org/x/sys/unix\"\n)\n\n")
	for _, n := range names {
		a, ok := ioctlArgs[n]
		if !ok {
			problems = append(problems, n+": missing from ioctlArgs")
			continue
		}
		fn := helperName(n)
		doc := ioctlDocs[n]
		if d, ok := newerIoctls[n]; ok {
			doc = d
		}
		fmt.Fprintf(&b, "// %s issues %s, which %s\n", fn, n, doc)
		switch a.kind {
		case argNone:
			fmt.Fprintf(&b, "func %s(fd int) (int, error) {\n\tr, err := ioctlPtr(fd, %s, nil)\n\treturn int(r), err\n}\n\n", fn, n)
		case argValue:
			fmt.Fprintf(&b, "func %s(fd int, arg uintptr) (int, error) {\n\tr, err := ioctlValue(fd, %s, arg)\n\treturn int(r), err\n}\n\n", fn, n)
		case argInt32, argUint32:
			fmt.Fprintf(&b, "func %s(fd int, arg *%s) (int, error) {\n\tr, err := ioctlPtr(fd, %s, unsafe.Pointer(arg))\n\treturn int(r), err\n}\n\n", fn, a.kind, n)
		case argString:
			fmt.Fprintf(&b, "// name must not contain a NUL byte (EINVAL).\nfunc %s(fd int, name string) (int, error) {\n\tp, err := unix.BytePtrFromString(name)\n\tif err != nil {\n\t\treturn -1, err\n\t}\n\tr, err := ioctlPtr(fd, %s, unsafe.Pointer(p))\n\treturn int(r), err\n}\n\n", fn, n)
		case argStruct, argBuffer:
			goType, sizeField := a.goType, "Size"
			if a.cType != "" {
				s := structs[a.cType]
				if s == nil {
					problems = append(problems, n+": struct "+a.cType+" not in the headers")
					continue
				}
				if len(s.Fields) == 0 || s.Fields[0].Offset != 0 || s.Fields[0].Size != 4 || (s.Fields[0].Name != "argsz" && s.Fields[0].Name != "size") {
					problems = append(problems, n+": struct "+a.cType+" does not start with a 32-bit argsz or size")
					continue
				}
				goType, sizeField = cabi.GoName(a.cType), cabi.GoFieldNames(s)[0]
			}
			if a.kind == argStruct && a.returns {
				fmt.Fprintf(&b, "// It sets arg.%s and returns the ioctl's result.\nfunc %s(fd int, arg *%s) (int, error) {\n\targ.%s = uint32(unsafe.Sizeof(*arg))\n\tr, err := ioctlPtr(fd, %s, unsafe.Pointer(arg))\n\treturn int(r), err\n}\n\n",
					sizeField, fn, goType, sizeField, n)
			} else if a.kind == argStruct {
				fmt.Fprintf(&b, "// It sets arg.%s.\nfunc %s(fd int, arg *%s) error {\n\targ.%s = uint32(unsafe.Sizeof(*arg))\n\t_, err := ioctlPtr(fd, %s, unsafe.Pointer(arg))\n\treturn err\n}\n\n",
					sizeField, fn, goType, sizeField, n)
			} else {
				fmt.Fprintf(&b, "// buf starts with a %[3]s and holds what follows it; the helper sets the\n// header's %[4]s to len(buf). A buf shorter than the header is EINVAL.\nfunc %[1]s(fd int, buf []byte) error {\n\tif len(buf) < int(unsafe.Sizeof(%[3]s{})) || len(buf) > 1<<30 {\n\t\treturn unix.EINVAL\n\t}\n\t(*%[3]s)(unsafe.Pointer(&buf[0])).%[4]s = uint32(len(buf))\n\t_, err := ioctlPtr(fd, %[2]s, unsafe.Pointer(&buf[0]))\n\treturn err\n}\n\n",
					fn, n, goType, sizeField)
			}
		default:
			problems = append(problems, n+": unknown kind "+a.kind)
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, fmt.Errorf("ioctl helpers: fix ioctls.go:\n\t%s", strings.Join(problems, "\n\t"))
	}
	return b.Bytes(), nil
}
