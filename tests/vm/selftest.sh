#!/usr/bin/env bash
# The lab's own checks: a script's status comes back out, and a guest that
# dies, hangs or runs out of memory ends the lab non-zero within its limit.
# The kernel-killing cases run only in a throw-away lab (uml, qemu).
# Usage: tests/vm/selftest.sh
set -u
cd "$(dirname "$0")/../.."
passed=0 failed=0
expect() { # expect STATUS|nonzero DESCRIPTION SCRIPT [ENV...]
    local want=$1 what=$2 script=$3; shift 3
    local start=$SECONDS
    env "$@" THINSR_LAB_QUIET=1 THINSR_LAB_NAME="selftest-$(basename "$script" .sh)" \
        tests/vm/run "tests/vm/selftest/$script" 2>/tmp/selftest.err
    local status=$?
    if [ "$status" = "$want" ] || { [ "$want" = nonzero ] && [ "$status" != 0 ]; }; then
        passed=$((passed + 1)); echo "ok   lab: $what (exit $status, $((SECONDS - start))s)"
    else
        failed=$((failed + 1)); echo "FAIL lab: $what: exit $status, want $want"; sed 's/^/     | /' /tmp/selftest.err
    fi
}
lab=$(tests/vm/run --which) || exit 2
export THINSR_LAB=$lab
expect 0 "a passing script passes, on real dm-thin" pass.sh
expect 7 "a failing script's status comes back" status.sh
expect 1 "a hung script is killed at the limit" hang.sh THINSR_LAB_TIMEOUT=20
if [ "$lab" != host ]; then
    expect 1 "a guest kernel panic fails the run" panic.sh THINSR_LAB_TIMEOUT=120
    expect 137 "a guest out of memory fails the run (the OOM killer's SIGKILL)" oom.sh THINSR_LAB_MEM=256M THINSR_LAB_TIMEOUT=120
    expect 2 "a missing UML kernel is named, exit 2" pass.sh THINSR_LAB=uml THINSR_UML=/nonexistent/linux.uml
fi
echo "lab selftest: $passed passed, $failed failed"
[ "$failed" = 0 ]
