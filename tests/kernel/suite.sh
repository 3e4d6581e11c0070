#!/usr/bin/env bash
# The kernel suite: drives the installed tools against the real kernel's
# dm-thin on loop devices and checks the results with tools we did not write
# (dmsetup, lvs, pvs, thin_check, thin_dump, thin_ls, sqlite3, cmp, blockdev).
# Usage: suite.sh [PART...]  (default: every part). Each part prints its own
# time and counts; the closing line counts them all.
set -u
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/common.sh"
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=($(kernel_parts))
for part in "${parts[@]}"; do
    [ -f "$here/$part.sh" ] || { fail "no such part: $part"; continue; }
    part_begin "$part"
    source "$here/$part.sh"
    part_end "$part"
done
summary
