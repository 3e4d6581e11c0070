#!/usr/bin/env bash
# The kernel suite: drives the installed tools against the real kernel's
# dm-thin on loop devices and checks the results with tools we did not write
# (dmsetup, lvs, pvs, thin_check, thin_dump, thin_ls, sqlite3, cmp, blockdev).
# One lab boot runs every part; the closing line counts them all.
set -u
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/common.sh"
default_parts="foundation lineage xapi repair space faults hostile concurrency ownership bench-smoke"
for part in "${@:-$default_parts}"; do
    for name in $part; do source "$here/$name.sh"; done
done
summary
