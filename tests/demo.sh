#!/usr/bin/env bash
# `make demo`: an SR on loop devices, shown command by command.
set -euo pipefail
source "$(dirname "$0")/kernel/lib.sh"
show() { printf '\n\033[1m# %s\033[0m\n' "$1"; }

show "Two 1 GiB loop devices stand in for disks"
new_loop A 1024; new_loop B 1024
echo "$A $B"

show "Create an SR that owns both devices"
SR=$(run thinsr-create --name demo --description "thinsr demo" --device "$A" --device "$B")
echo "$SR"

show "Create three thin volumes (no space is used until data is written)"
run thinvdi-create demo --name "web server root" --size 10G
run thinvdi-create demo --name database --size 4G
run thinvdi-create demo --name scratch --size 100G

show "Attach two of them and write data"
WEB=$(run thinvdi-attach demo webserverroot); echo "$WEB"
DB=$(run thinvdi-attach demo database); echo "$DB"
run write_pattern "$WEB" web 48
run write_pattern "$DB" db 16

show "The SR and its volumes"
run thinsr-stat demo
run thinvdi-ls demo
run thinsr-ls

show "Detach everything, then attach the SR again"
run thinvdi-detach demo webserverroot
run thinvdi-detach demo database
run thinsr-detach demo
run thinsr-ls
run thinsr-attach demo
WEB=$(run thinvdi-attach demo webserverroot)
run cmp -n $((48 << 20)) "$THINSR_SCRATCH/pattern-web" "$WEB" && echo "web server root: data intact"

show "Snapshot, clone and revert: metadata-only, instant at any size"
run thinvdi-snapshot demo webserverroot --name "before upgrade"
run write_pattern "$WEB" upgrade 8
run thinvdi-clone demo beforeupgrade --name "web test copy"
run thinvdi-tree demo
run thinvdi-detach demo webserverroot
run thinvdi-revert demo webserverroot beforeupgrade
WEB=$(run thinvdi-attach demo webserverroot)
run cmp -n $((48 << 20)) "$THINSR_SCRATCH/pattern-web" "$WEB" && echo "web server root: back to its snapshot"
run thinvdi-resize demo webserverroot 20G
run blockdev --getsize64 "$WEB"

show "Clean up"
run thinvdi-detach demo webserverroot
run thinsr-detach demo
run thinsr-destroy --force demo
run thinsr-ls
