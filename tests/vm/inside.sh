#!/usr/bin/env bash
# Runs inside the lab (the VM, or a host with dm-thin): prepares modules, a
# tmpfs for loop-device backing files and a writable LVM configuration, then
# runs the script with the tools on PATH as `make install` lays them out.
root=$1 out=$2 binary=$3 script=$4; shift 4
name=$(basename "$script" .sh)
export LVM_SUPPRESS_FD_WARNINGS=1
modprobe loop 2>/dev/null
modprobe dm_thin_pool 2>/dev/null
export THINSR_LAB=$(mktemp -d /run/thinsr-lab.XXXXXX)
mount -t tmpfs -o size=3G tmpfs "$THINSR_LAB"
# The guest's /etc is read-only: LVM keeps its backups and archives in a copy.
mkdir -p "$THINSR_LAB/lvm" && cp -a /etc/lvm/. "$THINSR_LAB/lvm/"
export LVM_SYSTEM_DIR=$THINSR_LAB/lvm
mkdir -p "$THINSR_LAB/bin"
ln -s "$binary" "$THINSR_LAB/bin/thinsr"
for tool in $("$binary" --list); do ln -s thinsr "$THINSR_LAB/bin/$tool"; done
export PATH=$THINSR_LAB/bin:$PATH
cd "$root"
bash "$script" "$@"
status=$?
# On a real host (no VM to throw away), release the lab's loop devices and tmpfs.
for dev in $(losetup -n -O NAME,BACK-FILE 2>/dev/null | awk -v lab="$THINSR_LAB" 'index($2, lab) == 1 {print $1}'); do
    losetup -d "$dev" 2>/dev/null
done
umount "$THINSR_LAB" 2>/dev/null && rmdir "$THINSR_LAB"
echo "$status" > "$out/$name.status"
exit "$status"
