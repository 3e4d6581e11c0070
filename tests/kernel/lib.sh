# Helpers for kernel tests: loop devices on the lab's tmpfs, checks that count
# passes and failures, and a digest of everything a failed command must leave
# unchanged. Sourced by the suites.
PASSED=0 FAILED=0 CURRENT=""
LOOPS=()

test_begin() { CURRENT=$1; echo "--- $CURRENT [${SECONDS}s]"; }
# A check reached 10 s or more after the one before it says how long it took (where a part's time goes).
CHECK_MARK=$SECONDS
took() { local t=$((SECONDS - CHECK_MARK)); CHECK_MARK=$SECONDS; TOOK=""; [ "$t" -lt 10 ] || TOOK=" [${t}s]"; }
pass() { PASSED=$((PASSED + 1)); took; echo "ok   $CURRENT: $1$TOOK"; }
fail() { FAILED=$((FAILED + 1)); took; echo "FAIL $CURRENT: $1$TOOK"; }
check() { # check DESCRIPTION COMMAND... : passes when the command succeeds
    local what=$1; shift
    if "$@" >/tmp/check.out 2>&1; then pass "$what"; else fail "$what"; sed 's/^/     | /' /tmp/check.out | tail -n 20; fi
}
check_eq() { # check_eq DESCRIPTION EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1 (expected '$2', got '$3')"; fi
}
run() { echo "+ $*" >&2; "$@"; }   # the trace on stderr: $(run ...) captures only the output
# capture [-2] VAR COMMAND...: VAR=$(COMMAND...) without the subshell (a fork
# costs tens of ms in the UML lab): the command runs in this shell, its output
# (with -2 its stderr too) goes through a scratch file, and trailing newlines
# are dropped as $(...) drops them. Returns the command's status. The command
# must not rely on running in a subshell (it may set this shell's variables).
CAPTURE_DEPTH=0
capture() {
    local _cap_err=/dev/stderr _cap_var _cap_file _cap_status
    [ "$1" = -2 ] && { _cap_err=""; shift; }
    _cap_var=$1; shift
    CAPTURE_DEPTH=$((CAPTURE_DEPTH + 1))
    _cap_file=$THINSR_SCRATCH/capture.$CAPTURE_DEPTH
    if [ -z "$_cap_err" ]; then "$@" >"$_cap_file" 2>&1; else "$@" >"$_cap_file"; fi
    _cap_status=$?
    CAPTURE_DEPTH=$((CAPTURE_DEPTH - 1))
    slurp "$_cap_var" "$_cap_file"
    return "$_cap_status"
}

# new_loop VAR SIZE_MIB: sets VAR to a loop device over a fresh sparse file.
# (Not a $(...) function: the counter and the device list must survive.)
LOOP_SEQ=0
new_loop() {
    LOOP_SEQ=$((LOOP_SEQ + 1))
    local file=$THINSR_SCRATCH/disk$LOOP_SEQ.img
    rm -f "$file"
    truncate -s "${2}M" "$file"
    local dev; dev=$(losetup -f --show "$file")
    LOOPS+=("$dev")
    printf -v "$1" '%s' "$dev"
}

# free_loop DEVICE: detaches a loop device new_loop made and deletes its backing
# file, giving its pages back to the lab's tmpfs (zeroing writes real pages
# into a sparse file, and one lane's parts share one tmpfs).
free_loop() {
    local file; file=$(losetup -n -O BACK-FILE "$1" 2>/dev/null)
    losetup -d "$1" 2>/dev/null
    [ -n "$file" ] && rm -f "$file"
    local kept=() dev
    for dev in "${LOOPS[@]}"; do [ "$dev" = "$1" ] || kept+=("$dev"); done
    LOOPS=("${kept[@]}")
}

# slurp VAR FILE: VAR=$(cat FILE) read by the shell (trailing newlines dropped likewise).
slurp() {
    local _slurp_text=""
    IFS= read -r -d '' _slurp_text <"$2"
    while [[ $_slurp_text == *$'\n' ]]; do _slurp_text=${_slurp_text%$'\n'}; done
    printf -v "$1" '%s' "$_slurp_text"
}

# write_pattern DEVICE SEED MIB: deterministic data, also kept as a file to compare with.
# (Its size is remembered, so same_as_pattern needs no stat for it.)
declare -gA PATTERN_BYTES=()
write_pattern() {
    local dev=$1 seed=$2 mib=$3
    head -c $((mib << 20)) < <(openssl enc -aes-128-ctr -nosalt -pass "pass:$seed" -in /dev/zero 2>/dev/null) \
        > "$THINSR_SCRATCH/pattern-$seed"
    PATTERN_BYTES[$seed]=$((mib << 20))
    dd if="$THINSR_SCRATCH/pattern-$seed" of="$dev" bs=1M oflag=direct conv=fsync status=none
}
# same_as_pattern DEVICE SEED: the device starts with the pattern's bytes. A
# pattern file write_pattern did not make (or made in a subshell) is measured
# with stat. (If openssl came up short, the comparison reaches the file's end:
# a failure.)
same_as_pattern() {
    local bytes=${PATTERN_BYTES[$2]:-}
    [ -n "$bytes" ] || bytes=$(stat -c %s "$THINSR_SCRATCH/pattern-$2")
    same_bytes "$bytes" "$THINSR_SCRATCH/pattern-$2" "$1"
}
# same_bytes BYTES A B: cmp -n BYTES A B. Up to 8 MiB cmp compares; above,
# python3 does, a MiB at a time, and says where they differ as cmp does: cmp
# reads 4 KiB at a time here (the block size of tmpfs and of a block device),
# a system call each, which cost 16 s for 400 MiB in the UML lab.
same_bytes() {
    if [ "$1" -le $((8 << 20)) ]; then cmp -n "$1" "$2" "$3"; return; fi
    python3 - "$2" "$3" "$1" <<'PY'
import sys
paths, total = sys.argv[1:3], int(sys.argv[3])
with open(paths[0], "rb", buffering=1 << 20) as a, open(paths[1], "rb", buffering=1 << 20) as b:
    done = 0
    while done < total:
        want = min(1 << 20, total - done)
        x, y = a.read(want), b.read(want)
        if x != y:
            at = next((i for i in range(min(len(x), len(y))) if x[i] != y[i]), None)
            if at is not None:
                sys.exit("%s %s differ: byte %d" % (paths[0], paths[1], done + at + 1))
            short = paths[0] if len(x) < len(y) else paths[1]
            sys.exit("cmp: EOF on %s after byte %d" % (short, done + min(len(x), len(y))))
        if len(x) < want:
            break   # both ended, at the same byte: as cmp, the same
        done += want
PY
}

# thinsr_files: the run and device trees, listed by the shell itself (a
# process costs 50-100 ms in the UML lab). SQLite's -wal/-shm are left out: a
# test's read-only sqlite3 reader leaves them behind (it cannot checkpoint) and
# the tools' next read-write close removes them. Lock files hold no state: the
# first command to take a lock makes its file, refused or not.
thinsr_files() {
    local path
    shopt -s globstar nullglob
    for path in /run/thinsr/** /dev/thinsr/**; do
        case $path in *.db-wal | *.db-shm | /run/thinsr/locks/*) ;; *) echo "$path" ;; esac
    done
    shopt -u globstar nullglob
}

# lvm_areas: the first 68 KiB of every loop device the tests made, read by one
# process. That holds the LVM label (sector 1), the metadata area's header (at
# 4 KiB: every commit to a VG, its LVs or their tags moves the header's pointer
# to the new metadata and its checksum) and the signatures at a device's start
# (ext4's superblock at 1 KiB, iso9660 at 32 KiB, btrfs at 64 KiB).
lvm_areas() { head -c 69632 "${LOOPS[@]}" 2>/dev/null; }
# The catalogs: their files' bytes, with a write-ahead log if one is left (the
# globs in state_digest and hostile's full_state). A refused command opens its
# catalog at most to read, which writes nothing; any write is a change, even one
# that leaves the same rows.

# dm_state: every device's name, uuid, major:minor, state (active or
# suspended, read-only), which tables it holds (live, inactive) and, from
# dmsetup -v status, its status: a pool's transaction id, metadata and data use
# (a thin device made or deleted behind the catalog's back shows there), a thin
# device's mapped sectors; then what every live table maps. Two processes. The
# -v report's read-ahead, open count and event number lines are left out, as
# dmsetup info's attr left them out: they are not what a command changes, and
# udev's probes still open devices after the command before. (Read from a
# file: bash reads a pipe a byte at a time, each a system call through UML's
# ptrace.)
dm_state() {
    local lines line kept=()
    dmsetup -v status >"$THINSR_SCRATCH/dm-state" 2>/dev/null
    mapfile -t lines <"$THINSR_SCRATCH/dm-state"
    for line in "${lines[@]}"; do
        case $line in "Read Ahead:"* | "Open count:"* | "Event number:"*) ;; *) kept+=("$line") ;; esac
    done
    [ ${#kept[@]} = 0 ] || printf '%s\n' "${kept[@]}"   # (one write, not one a line)
    dmsetup table 2>/dev/null
}

# block_backings: what every loop device reads and which nbd devices a
# server holds (a template's image a refused command left exposed shows
# here), read by the shell itself.
block_backings() {
    local file line
    shopt -s nullglob
    for file in /sys/block/loop*/loop/backing_file /sys/block/nbd*/pid; do
        read -r line < "$file" 2>/dev/null && echo "$file $line"
    done
    shopt -u nullglob
}

# state_digest VAR: sets VAR to a digest of what a refused command could
# change, and must not: the dm tables (which devices exist, active or
# suspended, and what they map), loop and nbd devices, the LVM metadata on
# every PV, signatures, the run and device trees, the catalogs.
# One pass of four processes, no subshell (a process costs 50-100 ms in the
# UML lab): the two dmsetup calls, head for the devices' first KiBs, and one
# sha256sum of that stream (kept in a scratch file) and of the catalogs' bytes.
# (It reads only what a refusal could write: a full pvs/blkid scan per call
# cost seconds in the lab.)
state_digest() {
    local stream=$THINSR_SCRATCH/digest
    { dm_state; block_backings; thinsr_files; lvm_areas; } >"$stream"
    sha256sum "$stream" /run/thinsr/*/catalog/catalog.db /run/thinsr/*/catalog/catalog.db-wal >"$stream.sum" 2>/dev/null
    IFS= read -r -d '' "$1" <"$stream.sum"
}

# expect_failure STATUS DESCRIPTION COMMAND...: the command must exit STATUS,
# print exactly one line on stderr, and leave the state digest unchanged.
expect_failure() {
    local want=$1 what=$2; shift 2
    local before after status errors
    state_digest before
    "$@" >/tmp/ef.out 2>/tmp/ef.err
    status=$?
    state_digest after
    mapfile -t errors </tmp/ef.err
    if [ "$status" = "$want" ] && [ "${#errors[@]}" = 1 ] && [ "$before" = "$after" ]; then
        pass "$what (exit $status: ${errors[0]})"
    else
        fail "$what: exit $status (want $want), ${#errors[@]} stderr lines, state $([ "$before" = "$after" ] && echo unchanged || echo CHANGED)"
        printf '     | %s\n' "${errors[@]:0:5}"
    fi
}

pool_status_field() { # pool_status_field SR_UUID N: field N (1 = transaction id, 5 = mode) of the pool status
    dmsetup status "thinsr_${1//-/}_pool" | awk -v n="$2" '{print $(3 + n)}'
}

# The suite's parts, in the order one lab runs them (each also runs alone).
kernel_parts() { awk '!/^#/ && NF {print $1}' "$(dirname "${BASH_SOURCE[0]}")/parts"; }
# processes_started: the kernel's count of processes made since boot (each costs 50-100 ms in the UML lab).
processes_started() { local key value; while read -r key value _; do [ "$key" = processes ] && { echo "$value"; return; }; done </proc/stat; }
part_begin() { PART_START=$SECONDS PART_PASSED=$PASSED PART_FAILED=$FAILED PART_PROCESSES=$(processes_started); echo "=== part $1"; }
part_end() {
    echo "part $1: $((SECONDS - PART_START))s, $((PASSED - PART_PASSED)) passed, $((FAILED - PART_FAILED)) failed" \
        "(scratch tmpfs: $(df -m --output=used "$THINSR_SCRATCH" 2>/dev/null | tail -n 1 | tr -d ' ') MiB used;" \
        "$(( $(processes_started) - PART_PROCESSES )) processes)"
}

summary() {
    echo
    echo "kernel: $PASSED passed, $FAILED failed"
    [ "$FAILED" = 0 ]
}
