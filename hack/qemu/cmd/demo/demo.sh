# The `make demo` session, run as root in the guest. Device addresses are
# fixed by hack/qemu: edu 00:03.0 and 00:06.0, e1000e 00:04.0, nvme
# 00:05.0; q35's ICH9 functions share a group at 00:1f.x.
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
run vfioctl bind 0000:00:04.0
run vfioctl bind 0000:00:1f.0
run vfioctl unbind 0000:00:03.0
run vfioctl bind ../../etc/passwd
