# Helpers for kernel tests: loop devices on the lab's tmpfs, checks that count
# passes and failures, and a digest of everything a failed command must leave
# unchanged. Sourced by the suites.
PASSED=0 FAILED=0 CURRENT=""
LOOPS=()

test_begin() { CURRENT=$1; echo "--- $CURRENT [${SECONDS}s]"; }
pass() { PASSED=$((PASSED + 1)); echo "ok   $CURRENT: $1"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL $CURRENT: $1"; }
check() { # check DESCRIPTION COMMAND... : passes when the command succeeds
    local what=$1; shift
    if "$@" >/tmp/check.out 2>&1; then pass "$what"; else fail "$what"; sed 's/^/     | /' /tmp/check.out | tail -n 20; fi
}
check_eq() { # check_eq DESCRIPTION EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1 (expected '$2', got '$3')"; fi
}
run() { echo "+ $*" >&2; "$@"; }   # the trace on stderr: $(run ...) captures only the output

# new_loop VAR SIZE_MIB: sets VAR to a loop device over a fresh sparse file.
# (Not a $(...) function: the counter and the device list must survive.)
LOOP_SEQ=0
new_loop() {
    LOOP_SEQ=$((LOOP_SEQ + 1))
    local file=$THINSR_LAB/disk$LOOP_SEQ.img
    rm -f "$file"
    truncate -s "${2}M" "$file"
    local dev; dev=$(losetup -f --show "$file")
    LOOPS+=("$dev")
    printf -v "$1" '%s' "$dev"
}

# write_pattern DEVICE SEED MIB: deterministic data, also kept as a file to compare with.
write_pattern() {
    local dev=$1 seed=$2 mib=$3
    head -c $((mib << 20)) < <(openssl enc -aes-128-ctr -nosalt -pass "pass:$seed" -in /dev/zero 2>/dev/null) \
        > "$THINSR_LAB/pattern-$seed"
    dd if="$THINSR_LAB/pattern-$seed" of="$dev" bs=1M oflag=direct conv=fsync status=none
}
same_as_pattern() { cmp -n "$(stat -c %s "$THINSR_LAB/pattern-$2")" "$THINSR_LAB/pattern-$2" "$1"; }

# thinsr_files: the run and device trees. SQLite's -wal/-shm are left out: a
# test's read-only sqlite3 reader leaves them behind (it cannot checkpoint) and
# the tools' next read-write close removes them; catalogs are compared by content.
thinsr_files() { ls -R /run/thinsr /dev/thinsr 2>/dev/null | grep -Ev '\.db-(wal|shm)$'; }

# state_digest: what a refused command must not change.
state_digest() {
    {
        dmsetup table 2>/dev/null | sort
        lvs --noheadings -o vg_name,lv_name,lv_size,lv_tags,lv_active 2>/dev/null | sort
        pvs --noheadings -o pv_name,vg_name 2>/dev/null | sort
        for dev in "${LOOPS[@]}"; do echo "$dev $(blkid -p -o value -s TYPE "$dev" 2>/dev/null)"; done
        thinsr_files
    } | sha256sum | cut -d' ' -f1
}

# expect_failure STATUS DESCRIPTION COMMAND...: the command must exit STATUS,
# print exactly one line on stderr, and leave the state digest unchanged.
expect_failure() {
    local want=$1 what=$2; shift 2
    local before after status lines
    before=$(state_digest)
    "$@" >/tmp/ef.out 2>/tmp/ef.err
    status=$?
    after=$(state_digest)
    lines=$(wc -l < /tmp/ef.err)
    if [ "$status" = "$want" ] && [ "$lines" = 1 ] && [ "$before" = "$after" ]; then
        pass "$what (exit $status: $(cat /tmp/ef.err))"
    else
        fail "$what: exit $status (want $want), $lines stderr lines, state $([ "$before" = "$after" ] && echo unchanged || echo CHANGED)"
        sed 's/^/     | /' /tmp/ef.err | head -5
    fi
}

pool_status_field() { # pool_status_field SR_UUID N: field N (1 = transaction id, 5 = mode) of the pool status
    dmsetup status "thinsr_$(echo "$1" | tr -d -)_pool" | awk -v n="$2" '{print $(3 + n)}'
}

summary() {
    echo
    echo "kernel: $PASSED passed, $FAILED failed"
    [ "$FAILED" = 0 ]
}
