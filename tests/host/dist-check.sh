#!/usr/bin/env bash
# tests/host/dist-check.sh DIST: checks what `make dist` left in DIST (.build/dist):
# the tarball runs in an empty root (no host libraries at all: the private runtime
# is all it has), and the RPM holds every file and asks only for the host packages
# thinsr drives, never for the build host's glibc.
set -uo pipefail
dist=${1:?usage: tests/host/dist-check.sh DIST}
passed=0 failed=0
check() { local what=$1; shift; if "$@"; then passed=$((passed + 1)); else echo "FAIL: $what" >&2; failed=$((failed + 1)); fi; }
tarball=$(ls "$dist"/thinsr-*.tar.gz | head -n 1)
rpm=$(ls "$dist"/thinsr-*.rpm | head -n 1)
check "a tarball and an RPM" test -f "$tarball" -a -f "$rpm"

empty=$(mktemp -d); trap 'umount "$empty/proc" 2>/dev/null; rm -rf "$empty"' EXIT
tar -C "$empty" -xzf "$tarball"
# The kernel's /proc, as every host has: libdispatch's thread-pool monitor reads
# /proc/PID/stat and stops the process (SIGILL) when it cannot (one run in seven
# failed here without it). Nothing of the build host's is in the root.
mkdir -p "$empty/proc" && mount -t proc proc "$empty/proc" || { echo "FAIL: cannot mount /proc in the empty root" >&2; exit 1; }
check "the empty root has no /lib or /etc of its own" test ! -e "$empty/lib" -a ! -e "$empty/etc/ld.so.cache"
check "thinsr-ls --help runs in the empty root 20 times in a row (no start-up that fails now and then)" \
    bash -c "for i in \$(seq 20); do chroot '$empty' /usr/sbin/thinsr-ls --help >/dev/null 2>&1 || exit 1; done"
check "thinsr-ls --help runs in the empty root" \
    bash -c "chroot '$empty' /usr/sbin/thinsr-ls --help | grep -q '^USAGE: thinsr-ls'"
check "thinvdi-import --help runs in the empty root" \
    bash -c "chroot '$empty' /usr/sbin/thinvdi-import --help | grep -q 'USAGE: thinvdi-import'"
check "thinsr --list names every tool in the empty root" \
    bash -c "[ \$(chroot '$empty' /usr/sbin/thinsr --list | wc -l) -eq \$(ls '$empty/usr/sbin' | grep -c -- '-') ]"
check "the interpreter is the private loader" \
    bash -c "patchelf --print-interpreter '$empty/usr/sbin/thinsr' | grep -qx '/usr/lib/thinsr/runtime/ld-linux-x86-64.so.2'"
check "no liblvm2cmd is carried (the host's own is loaded)" \
    bash -c "! ls '$empty'/usr/lib/thinsr/runtime | grep -q lvm"
check "sqlite and libaio are linked in, not carried" \
    bash -c "! ls '$empty'/usr/lib/thinsr/runtime | grep -Eq 'sqlite|libaio'"

files=$(rpm -qpl "$rpm"); needs=$(rpm -qpR "$rpm")
for path in /usr/sbin/thinsr /usr/sbin/thinsr-create /usr/sbin/thinvdi-hydrate /usr/share/man/man8/thinvdi-import.8 \
    /usr/share/bash-completion/completions/thinsr-ls /usr/lib/systemd/system/thinsr-monitor.service \
    /usr/libexec/xapi-storage-script/volume/org.xen.xapi.storage.thinsr/Volume.create \
    /usr/libexec/xapi-storage-script/datapath/thinsr/Datapath.attach /usr/libexec/xapi/storage/nbd \
    /usr/lib/thinsr/runtime/libc.so.6 /var/lib/thinsr; do
    check "the RPM holds $path" grep -qx "$path" <<<"$files"
done
for package in lvm2 device-mapper-persistent-data e2fsprogs util-linux; do
    check "the RPM requires $package" grep -q "^$package\$" <<<"$needs"
done
check "the RPM asks for no host glibc or libstdc++" bash -c "! grep -Eq 'GLIBC|GLIBCXX|libc\\.so|libstdc' <<<'$needs'"
check "the payload is one rpm 4.11 reads (gzip or xz)" \
    bash -c "rpm -qp --qf '%{PAYLOADCOMPRESSOR}' '$rpm' | grep -Eqx 'gzip|xz'"
check "the unit names the installed binary" grep -q '^ExecStart=/usr/sbin/thinsr-monitor$' "$empty/usr/lib/systemd/system/thinsr-monitor.service"
echo "dist: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
