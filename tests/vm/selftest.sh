#!/usr/bin/env bash
# The lab's own checks: a script's status comes back out, and a guest that
# dies, hangs or runs out of memory ends the lab non-zero within its limit.
# The kernel-killing cases run only in a throw-away lab (uml, qemu).
# Usage: tests/vm/selftest.sh
set -u
cd "$(dirname "$0")/../.."
passed=0 failed=0
# In the uml lab the cases run side by side (each its own lab; most of their
# time is the guest booting, hanging or dying, not CPU), each reporting into
# its own file; the results are read back in order.
results=$(mktemp -d); trap 'rm -rf "$results"' EXIT
cases=0
expect() { # expect STATUS|nonzero DESCRIPTION SCRIPT [ENV...]: starts the case in the background
    local want=$1 what=$2 script=$3; shift 3
    cases=$((cases + 1))
    local result=$results/$cases name
    name=selftest-$(basename "$script" .sh)
    # (Two cases of one script: the second is the missing-kernel one, which stops before any file.)
    [ "$want" = 2 ] && name=$name-nokernel
    (
        start=$SECONDS
        env "$@" THINSR_LAB_QUIET=1 THINSR_LAB_NAME="$name" \
            tests/vm/run "tests/vm/selftest/$script" 2>"$result.err"
        status=$?
        if [ "$status" = "$want" ] || { [ "$want" = nonzero ] && [ "$status" != 0 ]; }; then
            echo "ok   lab: $what (exit $status, $((SECONDS - start))s)" >"$result"
        else
            { echo "FAIL lab: $what: exit $status, want $want"; sed 's/^/     | /' "$result.err"; } >"$result"
        fi
    ) &
    # (Only User-Mode Linux labs side by side: a QEMU lab takes 4 GiB, and the host lab is one kernel.)
    [ "$THINSR_LAB" = uml ] || wait
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
wait
for ((i = 1; i <= cases; i++)); do
    if [ -f "$results/$i" ]; then cat "$results/$i"; else echo "FAIL lab: case $i left no result"; fi
    case $(head -c 4 "$results/$i" 2>/dev/null) in "ok  ") passed=$((passed + 1)) ;; *) failed=$((failed + 1)) ;; esac
done
echo "lab selftest: $passed passed, $failed failed"
[ "$failed" = 0 ]
