#!/usr/bin/env bash
# Runs inside the lab (UML, QEMU, or a host with dm-thin): prepares modules, a
# tmpfs for loop-device backing files and a writable LVM configuration, then
# runs the script with the tools on PATH as `make install` lays them out.
# Usage: inside.sh ROOT OUT NAME BINARY SCRIPT [ARGS...]; the script's status
# is also written to OUT/NAME.status.
root=$1 out=$2 name=$3 binary=$4 script=$5; shift 5
export LVM_SUPPRESS_FD_WARNINGS=1
export THINSR_LAB_KIND=${THINSR_LAB_KIND:-host}   # uml and qemu set it; bench reports it
modprobe loop 2>/dev/null
modprobe dm_thin_pool 2>/dev/null
modprobe dm_clone 2>/dev/null
modprobe nbd nbds_max=16 2>/dev/null
export THINSR_SCRATCH=$(mktemp -d /run/thinsr-lab.XXXXXX)
mount -t tmpfs -o size=${THINSR_SCRATCH_SIZE:-3G} tmpfs "$THINSR_SCRATCH"
# The guest's /etc is read-only: LVM keeps its backups and archives in a copy.
mkdir -p "$THINSR_SCRATCH/lvm" && cp -a /etc/lvm/. "$THINSR_SCRATCH/lvm/"
export LVM_SYSTEM_DIR=$THINSR_SCRATCH/lvm
# /var/lib is read-only in the lab: what thinsr keeps there (export records) goes to scratch.
[ -w /var/lib ] || export THINSR_STATE_DIR=$THINSR_SCRATCH/state
# A UML guest boots with loopback down; NBD over TCP needs it.
ip link set lo up 2>/dev/null
mkdir -p "$THINSR_SCRATCH/bin"
ln -s "$binary" "$THINSR_SCRATCH/bin/thinsr"
for tool in $("$binary" --list); do ln -s thinsr "$THINSR_SCRATCH/bin/$tool"; done
export PATH=$THINSR_SCRATCH/bin:$PATH
# Template URIs resolve through the repository's scheme scripts (make install puts them in /usr/libexec/xapi/storage).
export THINSR_SCHEME_DIR=${THINSR_SCHEME_DIR:-$root/plugins/schemes}
cd "$root"
bash "$script" "$@"
status=$?
# On a real host (no VM to throw away), release the lab's loop devices and tmpfs.
for dev in $(losetup -n -O NAME,BACK-FILE 2>/dev/null | awk -v lab="$THINSR_SCRATCH" 'index($2, lab) == 1 {print $1}'); do
    losetup -d "$dev" 2>/dev/null
done
umount "$THINSR_SCRATCH" 2>/dev/null && rmdir "$THINSR_SCRATCH"
echo "$status" > "$out/$name.status"
exit "$status"
