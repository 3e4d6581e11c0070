# XCP-ng 8.3's dom0 on the lab's real kernel: its constraints emulated, as the
# lab cannot boot CentOS 7 or Linux 4.19 (../shared/reference/xcp-ng-8.3-host.md):
# - LVM: a default configuration with metadata_read_only = 1 and a master one
#   (THINSR_LVM_MASTER_DIR stands for /etc/lvm/master), each with a backup
#   directory of its own: the lab's LVM 2.03 does not refuse writes under
#   metadata_read_only as dom0's 2.02 does, so every write is checked to have
#   gone through the master configuration by where its metadata backup landed;
# - dm-clone unloadable (`install dm_clone /bin/false` in a modprobe.d on tmpfs);
# - thin_check replaced by a STAND-IN for thin-provisioning-tools 0.7.3: it says
#   0.7.3 to -V and refuses --metadata-snap/-m with 0.7.3's usage and exit 1,
#   and hands everything else to the real thin_check;
# - qemu-img and qemu-nbd only under /usr/lib64/qemu-dp/bin, as qemu-dp keeps
#   them; no nbdcopy; nbdkit without its filters (XCP-ng's package has none),
#   so thinvdi-serve falls back to qemu-nbd;
# - for the host report and the first SR lifecycle, liblvm2cmd made unloadable
#   (/dev/null bound over it): LVM is then driven through its lvm command.
# Everything is put back at the end: the lab's other parts share this lane.

test_begin "the lab in XCP-ng 8.3's shape"
XS=$THINSR_SCRATCH/xcpng
mkdir -p "$XS/bin" "$XS/default-backup" "$XS/master-backup" "$XS/lib64/qemu-dp/bin"
XCPNG_SAVED_LVM=$LVM_SYSTEM_DIR XCPNG_SAVED_PATH=$PATH
for kind in default master; do
    mkdir -p "$XS/lvm-$kind" && cp -a "$LVM_SYSTEM_DIR/." "$XS/lvm-$kind/"
    readonly_value=$([ "$kind" = default ] && echo 1 || echo 0)
    cat > "$XS/lvm-$kind/lvmlocal.conf" <<CONF
global {
    metadata_read_only = $readonly_value
}
backup {
    backup = 1
    backup_dir = "$XS/$kind-backup"
    archive = 0
}
CONF
done
export LVM_SYSTEM_DIR=$XS/lvm-default THINSR_LVM_MASTER_DIR=$XS/lvm-master
check_eq "the default configuration says metadata is read-only" "metadata_read_only=1" "$(lvmconfig global/metadata_read_only)"
cat > "$XS/bin/thin_check" <<'STANDIN'
#!/bin/bash
# STAND-IN for thin_check of thin-provisioning-tools 0.7.3 (the lab has 0.9+):
# answers -V and --metadata-snap/-m as 0.7.3 does; anything else runs the real one.
for arg in "$@"; do
    case $arg in
    -V|--version) echo 0.7.3; exit 0 ;;
    -m|--metadata-snap|--metadata-snap=*)
        echo "thin_check: unrecognized option '$arg'" >&2
        printf '%s\n' "Usage: thin_check [options] {device|file}" "Options:" "  {-q|--quiet}" "  {-h|--help}" \
            "  {-V|--version}" "  {--clear-needs-check-flag}" "  {--ignore-non-fatal-errors}" "  {--skip-mappings}" \
            "  {--super-block-only}" >&2
        exit 1 ;;
    esac
done
exec /usr/sbin/thin_check "$@"
STANDIN
chmod +x "$XS/bin/thin_check"
export PATH=$XS/bin:$PATH
check_eq "the stand-in answers as thin_check 0.7.3" "0.7.3" "$(thin_check -V)"
rmmod dm_clone 2>/dev/null || modprobe -r dm_clone 2>/dev/null
mount -t tmpfs xcpng-modprobe /etc/modprobe.d && echo "install dm_clone /bin/false" > /etc/modprobe.d/xcpng.conf
check "dm-clone cannot be loaded" bash -c '! modprobe dm_clone 2>/dev/null && ! dmsetup targets | grep -q "^clone "'
cp -a /usr/lib64/. "$XS/lib64/" && cp /usr/bin/qemu-img /usr/bin/qemu-nbd "$XS/lib64/qemu-dp/bin/"
mount --bind "$XS/lib64" /usr/lib64
for program in qemu-img qemu-nbd nbdcopy; do [ -e /usr/bin/$program ] && mount --bind /dev/null /usr/bin/$program; done
XCPNG_FILTERS=$(nbdkit --dump-config | sed -n 's/^filterdir=//p')
mount -t tmpfs xcpng-filters "$XCPNG_FILTERS"
check "qemu-img is not on PATH, only in qemu-dp's directory" bash -c '! qemu-img --version >/dev/null 2>&1 && /usr/lib64/qemu-dp/bin/qemu-img --version >/dev/null'

# No liblvm2cmd can be loaded (a host without lvm2-libs): thinsr runs the lvm command instead.
XCPNG_LVMLIB=$(readlink -f /usr/lib/x86_64-linux-gnu/liblvm2cmd.so.2.03)
mount --bind /dev/null "$XCPNG_LVMLIB"

test_begin "thinsr-host: what this host lacks, what thinsr does instead"
thinsr-host --json > "$XS/host.json"; status=$?
check_eq "nothing thinsr cannot work without is missing (exit 0)" 0 "$status"
check_eq "the features the probes decide" \
    '{"copy_on_read":false,"hydrate_attached":false,"live_metadata_check":false,"nbdcopy":false,"nbdkit_export":false}' \
    "$(jq -cS .features "$XS/host.json")"
check_eq "qemu-img found where qemu-dp keeps it" "/usr/lib64/qemu-dp/bin/qemu-img" \
    "$(jq -r '.probes[] | select(.name == "qemu-img") | .detail' "$XS/host.json")"
check_eq "thin-provisioning-tools' version read from the stand-in" "version 0.7.3" \
    "$(jq -r '.probes[] | select(.name == "thin-provisioning-tools") | .detail' "$XS/host.json")"
check "the LVM configuration in use is the master one" \
    grep -q "master: writes use $XS/lvm-master" <(jq -r '.probes[] | select(.name == "LVM configuration") | .detail' "$XS/host.json")
check "LVM is its lvm command, since no liblvm2cmd can be loaded" grep -qx "the lvm command (.*/lvm): no liblvm2cmd can be loaded" \
    <(jq -r '.probes[] | select(.name == "LVM") | .detail' "$XS/host.json")
check "the text report names dm-clone's package and the offline hydration" \
    bash -c 'thinsr-host | grep -q "^without dm-clone (clone target): thinvdi-hydrate copies detached volumes offline.*install the kernel (dm_clone module, Linux 5.4 or later)$"'

test_begin "SR and volume lifecycle through the lvm command, writes through the master configuration"
new_loop XD1 600
XSR=$(thinsr-create --name xcpng --device "$XD1" --pool-size 400M -v 2> "$XS/create.log")
check "thinsr-create under a read-only default configuration" test -n "$XSR"
check "every LVM call was the lvm command (vgcreate and lvs among them)" \
    bash -c "grep -q 'exec [^ ]*/lvm vgcreate ' '$XS/create.log' && grep -q 'exec [^ ]*/lvm lvs ' '$XS/create.log'"
XVG=$(vg_of "$XSR")
check "the VG's metadata backup was written through the master configuration" test -s "$XS/master-backup/$XVG"
XV=$(thinvdi-create xcpng --name v1 --size 32M)
thinvdi-snapshot xcpng "$XV" >/dev/null
XR=$(thinvdi-create xcpng --name r1 --size 8M --preallocate)
check_eq "a preallocated volume is an LV the lvm command made" 1 "$(lvs --noheadings -o lv_name "$XVG" | grep -c "_r")"
check "and the lvm command removes it" thinvdi-destroy xcpng "$XR"
check "thinsr-detach" thinsr-detach xcpng
check "thinsr-attach" thinsr-attach "$XSR"
umount "$XCPNG_LVMLIB"   # liblvm2cmd again from here on, as XCP-ng's lvm2-libs has it

test_begin "thinsr-check with thin-provisioning-tools 0.7.3: live metadata not checked, never damaged"
touch "$XS/bin/thin_check"   # changed since thinsr-host probed it: to be probed again
thinsr-check -v xcpng > "$XS/check.out" 2> "$XS/check.log"; status=$?
check_eq "an attached SR checks clean (exit 0)" 0 "$status"
check "a changed thin_check is probed again (thin_check -V runs)" grep -q "exec $XS/bin/thin_check -V:" "$XS/check.log"
check "it says the live metadata was not checked, and why" \
    grep -q "^note: live metadata not checked: thin-provisioning-tools 0.7.3 is older than 0.9" "$XS/check.out"
check_eq "--json: metadata not checked, clean" "not checked clean" \
    "$(thinsr-check --json -v xcpng 2> "$XS/check2.log" | jq -r '"\(.metadata) \(.result)"')"
check "the next check takes the version cached for this boot (no thin_check -V)" \
    bash -c "grep -q 'exec ' '$XS/check2.log' && ! grep -q 'thin_check -V' '$XS/check2.log'"
check "thinsr-detach" thinsr-detach xcpng
check "a detached SR is checked in full (thin_check without -m works in 0.7.3)" thinsr-check xcpng
check "thinsr-attach" thinsr-attach "$XSR"

test_begin "templates and clones without dm-clone; qemu from qemu-dp's directory"
# xcpng_pattern SEED MIB FILE: pseudo-random bytes, the same for the same seed.
xcpng_pattern() { head -c $(($2 << 20)) < <(openssl enc -aes-128-ctr -nosalt -pass "pass:$1" -in /dev/zero 2>/dev/null) > "$3"; }
xcpng_pattern xtpl 48 "$XS/base.raw"
/usr/lib64/qemu-dp/bin/qemu-img convert -f raw -O qcow2 "$XS/base.raw" "$XS/base.qcow2"
XT=$(thinvdi-introduce xcpng "file://$XS/base.qcow2" --name base)
check_eq "a qcow2 template is introduced (qemu-img from qemu-dp)" base "$XT"
XC=$(thinvdi-clone xcpng base --name c1)
XCP=$(thinvdi-attach xcpng "$XC")
check "the clone reads the template through its external origin" cmp -n $((48 << 20)) "$XCP" "$XS/base.raw"
xcpng_pattern xown 1 "$XS/own.raw"
dd if="$XS/own.raw" of="$XCP" bs=1M seek=8 oflag=direct conv=fsync status=none
expect_failure 69 "hydrating an attached clone is refused, naming dm-clone" thinvdi-hydrate xcpng "$XC"
check "the line names the missing module" grep -q "module dm_clone" /tmp/ef.err
expect_failure 69 "copy-on-read is refused, naming dm-clone" thinvdi-hydrate xcpng "$XC" --on-read
check "thinvdi-detach" thinvdi-detach xcpng "$XC"

test_begin "offline hydration of a detached clone: killed, resumed, then the origin is dropped"
used_before=$(thinvdi-stat --json xcpng "$XC" | jq .physical_utilisation)
# Each chunk waits 0.4 s before it copies: killed once the progress says some were copied.
THINSR_FAULT_PAUSE=offline-hydration-chunk:400 thinvdi-hydrate xcpng "$XC" --progress=json 2>"$XS/killed.progress" &
hydrator=$!
for _ in $(seq 150); do
    [ "$(tail -n 1 "$XS/killed.progress" 2>/dev/null | jq -r '.done // 0' 2>/dev/null)" -gt 0 ] 2>/dev/null && break
    sleep 0.2
done
kill -9 "$hydrator" 2>/dev/null; wait "$hydrator" 2>/dev/null
check "killed midway, the clone still reads its template" \
    test "$(thinvdi-stat --json xcpng "$XC" | jq -r .origin_template)" != null
used_midway=$(thinvdi-stat --json xcpng "$XC" | jq .physical_utilisation)
check "killed midway, part of the template was copied ($used_before, then $used_midway bytes)" \
    test "$used_midway" -gt "$used_before" -a "$used_midway" -lt $((48 << 20))
thinvdi-hydrate xcpng "$XC" --progress=json 2> "$XS/hydrate.progress" > "$XS/hydrate.out"; status=$?
check_eq "a second run resumes and finishes (exit 0)" 0 "$status"
check "it says so" grep -q "^c1 hydrated: it no longer reads its template$" "$XS/hydrate.out"
check_eq "the clone no longer reads a template" null "$(thinvdi-stat --json xcpng "$XC" | jq -r .origin_template)"
check_eq "no hydration device is left" 0 "$(dmsetup ls | grep -c "^thinsr_${XSR//-/}_h")"
XCP=$(thinvdi-attach xcpng "$XC")
XCU=$(thinvdi-stat --json xcpng "$XC" | jq -r .uuid)
check_eq "its table is the thin device alone, no external origin" 5 \
    "$(dmsetup table "thinsr_${XSR//-/}_v${XCU//-/}" | awk '{print NF}')"
head -c $((8 << 20)) "$XS/base.raw" > "$XS/expected"
cat "$XS/own.raw" >> "$XS/expected"
tail -c +$(((9 << 20) + 1)) "$XS/base.raw" >> "$XS/expected"
check "it reads the template's bytes and its own write, block for block" cmp -n $((48 << 20)) "$XCP" "$XS/expected"
check "thinvdi-detach" thinvdi-detach xcpng "$XC"

test_begin "export without nbdkit's filters or nbdcopy: thinsr writes the extents itself"
check "a raw export" thinvdi-export xcpng "$XC" "$XS/out.raw" --format raw
check "it is the volume, byte for byte" cmp -n $((48 << 20)) "$XS/out.raw" "$XS/expected"
check "a qcow2 export (sparse raw, then qemu-img from qemu-dp)" thinvdi-export xcpng "$XC" "$XS/out.qcow2" --format qcow2
check "qemu-img compare: the qcow2 holds the same bytes" \
    /usr/lib64/qemu-dp/bin/qemu-img compare -f qcow2 -F raw "$XS/out.qcow2" "$XS/out.raw"
thinvdi-export xcpng "$XC" - > "$XS/stdout.raw"
check "to standard output, every byte in order" cmp "$XS/stdout.raw" "$XS/out.raw"
check_eq "no scratch image is left beside the exports" "expected out.qcow2 out.raw own.raw stdout.raw" \
    "$(cd "$XS" && ls -A | grep -E '^(\.|out|stdout|expected|own)' | LC_ALL=C sort | tr '\n' ' ' | sed 's/ $//')"

test_begin "thinvdi-serve without nbdkit's filters: qemu-nbd from qemu-dp's directory"
# xcpng_stop_server PID: as a sysadmin would (SIGTERM), waited for (at most 10 s).
xcpng_stop_server() {
    kill -TERM "$1" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null; return 1
}
XSOCK=$XS/serve.sock
XD=$(thinvdi-serve xcpng "$XC" --socket "$XSOCK" --detach --json)
XURI=$(jq -r .uri <<< "$XD")
check_eq "read-only: the URI nbdkit would give" "nbd+unix:///c1?socket=$XSOCK" "$XURI"
check "served by qemu-nbd (this nbdkit has no extentlist filter)" pgrep -f "qemu-dp/bin/qemu-nbd .* -r --shared=0 "
nbdinfo --json "$XURI" > "$XS/info.json"
check_eq "read-only, 48 MiB" "true $((48 << 20))" "$(jq -r '.exports[0] | "\(.is_read_only) \(.["export-size"])"' "$XS/info.json")"
check_eq "its block status: every block data (as the man page says)" "all data $((48 << 20))" \
    "$(nbdinfo --map "$XURI" | awk '$3 != 0 {other = 1} {sum += $2} END {print (other ? "not all data" : "all data"), sum}')"
check "qemu-img compare: the export holds the volume's bytes" \
    /usr/lib64/qemu-dp/bin/qemu-img compare -q -f raw -F raw "$XS/out.raw" "$XURI"
check "SIGTERM stops it" xcpng_stop_server "$(jq -r .pid <<< "$XD")"
check_eq "no qemu-nbd, socket or pid file is left" "0 no no" \
    "$(pgrep -c qemu-nbd) $([ -e "$XSOCK" ] && echo yes || echo no) $([ -e "$(jq -r .pid_file <<< "$XD")" ] && echo yes || echo no)"
XD=$(thinvdi-serve xcpng "$XC" --socket "$XSOCK" --writable --detach --json)
check "--writable: qemu-io writes 1 MiB through it" \
    qemu-io -f raw -c "write -P 0x5a 0 1M" "$(jq -r .uri <<< "$XD")"
check "SIGTERM stops the writable server" xcpng_stop_server "$(jq -r .pid <<< "$XD")"
{ head -c 1M /dev/zero | tr '\0' Z; tail -c +$(((1 << 20) + 1)) "$XS/expected"; } > "$XS/written"
XCP=$(thinvdi-attach --read-only xcpng "$XC")
check "the volume holds the write and the rest unchanged" cmp -n $((48 << 20)) "$XCP" "$XS/written"
thinvdi-detach xcpng "$XC"
: > "$XS/keys.psk"
expect_failure 69 "TLS without nbdkit's filters is refused before anything is held" \
    thinvdi-serve xcpng "$XC" --socket "$XSOCK" --tls-psk "$XS/keys.psk"
check "the line names TLS, the missing filter and nbdkit's package" \
    grep -q "serving with TLS needs nbdkit with its extentlist filter.*install nbdkit" /tmp/ef.err
check "the template can be forgotten now nothing reads it" thinvdi-forget xcpng base
# (The suite's own metadata checks use the real thin_check.)
PATH=$XCPNG_SAVED_PATH check_pool_agrees "$XSR" "after offline hydration"
PATH=$XCPNG_SAVED_PATH final_metadata_check "$XSR"
check "the VG's backups never went to the default configuration's directory" test -z "$(ls -A "$XS/default-backup")"
free_loop "$XD1"

# Put the lab back as it was.
umount "$XCPNG_LVMLIB" 2>/dev/null   # (if the lifecycle section did not)
umount "$XCPNG_FILTERS"
for program in qemu-img qemu-nbd nbdcopy; do umount /usr/bin/$program 2>/dev/null; done
umount /usr/lib64
umount /etc/modprobe.d
modprobe -d /run/lab-modules dm_clone 2>/dev/null || modprobe dm_clone 2>/dev/null
export LVM_SYSTEM_DIR=$XCPNG_SAVED_LVM PATH=$XCPNG_SAVED_PATH
unset THINSR_LVM_MASTER_DIR
