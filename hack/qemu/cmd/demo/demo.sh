# The `make demo` session, run as root in the guest. Device addresses are
# fixed by hack/qemu (intel profile): edu 00:03.0 and 00:06.0; e1000e
# 01:00.0 and nvme 02:00.0 behind root ports; two test devices behind a
# PCIe-to-PCI bridge at 03:01.0 and 03:02.0; an SR-IOV nvme at 04:00.0;
# q35's ICH9 functions share a group at 00:1f.x.
run() {
	echo
	echo "# $*"
	"$@"
	echo "[exit $?]"
}
run vfioctl doctor
run vfioctl list
run vfioctl groups
run vfioctl bind 0000:00:03.0
run vfioctl info 0000:00:03.0
run vfioctl dma-test 0000:00:03.0
run vfioctl dma-test 0000:00:03.0 --backend legacy
echo
echo "# an e1000e in use: up, with an address from the documentation range"
ip link set eth0 up && ip addr add 192.0.2.1/24 dev eth0
run vfioctl bind 0000:01:00.0
run vfioctl bind 0000:00:1f.0
run vfioctl unbind 0000:00:03.0
echo
echo "# a secondary bus reset of the nvme behind its root port"
run vfioctl bind 0000:02:00.0
run vfioctl reset --hot 0000:02:00.0
echo
echo "# the same nvme driven from user space: identify, then 2 s of random reads at depth 32"
run vfioctl nvme identify 0000:02:00.0
run vfioctl nvme bench 0000:02:00.0 --depth 32 --time 2s --cpu 1
run vfioctl restore 0000:02:00.0
run vfioctl sriov 0000:04:00.0
echo
echo "# for container runtimes and Kubernetes: an edu bound for good, owned by uid 1000, described in CDI"
run vfioctl bind --persist --owner 1000:1000 0000:00:06.0
run vfioctl persist list
run vfioctl cdi generate
run vfioctl cdi list
run vfioctl bind ../../etc/passwd
