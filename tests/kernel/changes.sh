# Changed blocks (thinvdi-changed) from the pool's metadata alone, checked
# against what was written and against a block-by-block comparison of the
# two devices' contents (python reading both, not our code).

# differing_blocks A B: the 64 KiB blocks whose contents differ, one per line.
differing_blocks() {
    python3 - "$1" "$2" <<'PY'
import sys
a, b = (open(p, "rb", buffering=0) for p in sys.argv[1:3])
block = 0
while True:
    x, y = a.read(65536), b.read(65536)
    if not x and not y:
        break
    if x != y:
        print(block)
    block += 1
PY
}
# blocks_of: the 64 KiB blocks thinvdi-changed --json reports, one per line.
blocks_of() { jq -r '.extents[] | range(.offset / 65536 | floor; (.offset + .length + 65535) / 65536 | floor)'; }
# bitmap_blocks: the set bits of --bitmap's base64, one per line (first block = top bit of byte 0).
bitmap_blocks() {
    jq -r .bitmap | python3 -c '
import base64, sys
data = base64.b64decode(sys.stdin.read())
print(len(data) % 4, file=sys.stderr)
for i, byte in enumerate(data):
    for bit in range(8):
        if byte & (0x80 >> bit):
            print(i * 8 + bit)'
}
seq_blocks() { for range in "$@"; do seq ${range%-*} ${range#*-}; done; }

test_begin "changed blocks between snapshots, the live volume and clones, from the pool's metadata"
new_loop CB1 512
CBSR=$(thinsr-create --name changes --device "$CB1")
CV=$(thinvdi-create changes --name disk --size 64M)
P=$(thinvdi-attach changes "$CV")
write_pattern "$P" cbbase 16
CS1=$(thinvdi-snapshot changes "$CV" --name s1)
# After s1: 64 KiB at 1 MiB (block 16), 200 KiB at 5 MiB + 30 KiB (blocks 80-83, unaligned), 1 MiB at 40 MiB
# (blocks 640-655, never written before), and a discard of 8-9 MiB (blocks 128-143).
dd if=/dev/urandom of="$P" bs=64K seek=16 count=1 oflag=direct conv=notrunc status=none
dd if=/dev/urandom of="$P" bs=1K seek=$((5 * 1024 + 30)) count=200 oflag=direct conv=notrunc status=none
dd if=/dev/urandom of="$P" bs=1M seek=40 count=1 oflag=direct conv=notrunc status=none
blkdiscard -o $((8 << 20)) -l $((1 << 20)) "$P"
CS2=$(thinvdi-snapshot changes "$CV" --name s2)
EXPECTED=$(seq_blocks 16-16 80-83 128-143 640-655)
thinvdi-changed --json changes "$CS1" "$CS2" > /tmp/cb.json
check_eq "s1 -> s2: exactly the blocks written or discarded" "$EXPECTED" "$(blocks_of < /tmp/cb.json)"
check_eq "changed_bytes adds up" "$((37 * 65536))" "$(jq .changed_bytes /tmp/cb.json)"
S1P=$(thinvdi-attach --read-only changes "$CS1"); S2P=$(thinvdi-attach --read-only changes "$CS2")
differing_blocks "$S1P" "$S2P" > /tmp/cb.diff
check_eq "every block whose contents differ (python, block by block) is reported" "" \
    "$(comm -23 <(sort /tmp/cb.diff) <(blocks_of < /tmp/cb.json | sort))"
check "and the comparison found the writes (the test is not vacuous)" test "$(wc -l < /tmp/cb.diff)" -ge 20
thinvdi-changed --bitmap changes "$CS1" "$CS2" > /tmp/cb.bitmap
check_eq "--bitmap: granularity 65536" "65536" "$(jq .granularity /tmp/cb.bitmap)"
check_eq "--bitmap: the same blocks, first block in the top bit" "$EXPECTED" "$(bitmap_blocks < /tmp/cb.bitmap 2>/dev/null)"
check_eq "--bitmap: whole 4-byte words (64 MiB = 1024 bits = 128 bytes)" "128" \
    "$(jq -r .bitmap /tmp/cb.bitmap | base64 -d | wc -c)"
check_eq "--bitmap --offset --length: blocks 64-127 only (bits 16-19 = blocks 80-83)" "$(seq 16 19)" \
    "$(thinvdi-changed --bitmap --offset $((4 << 20)) --length $((4 << 20)) changes "$CS1" "$CS2" | bitmap_blocks 2>/dev/null)"
# The live volume after s2, and a clone of s2 with writes of its own.
dd if=/dev/urandom of="$P" bs=64K seek=300 count=2 oflag=direct conv=notrunc status=none
check_eq "s2 -> the live volume: its two new blocks" "$(seq 300 301)" "$(thinvdi-changed --json changes "$CS2" "$CV" | blocks_of)"
check_eq "s1 -> the live volume: both rounds" "$( { echo "$EXPECTED"; seq 300 301; } | sort -n)" \
    "$(thinvdi-changed --json changes "$CS1" "$CV" | blocks_of | sort -n)"
CC=$(thinvdi-clone changes "$CS2" --name clone)
CP=$(thinvdi-attach changes "$CC"); dd if=/dev/urandom of="$CP" bs=64K seek=500 count=1 oflag=direct conv=notrunc status=none
check_eq "s1 -> a clone of s2: s1 -> s2 and the clone's own write" "$( { echo "$EXPECTED"; echo 500; } | sort -n)" \
    "$(thinvdi-changed --json changes "$CS1" "$CC" | blocks_of | sort -n)"
differing_blocks "$S1P" "$CP" > /tmp/cb.diff2
check_eq "every block of the clone that differs from s1 is reported" "" \
    "$(comm -23 <(sort /tmp/cb.diff2) <(thinvdi-changed --json changes "$CS1" "$CC" | blocks_of | sort))"
thinvdi-detach changes "$CC"; thinvdi-detach changes "$CS1"; thinvdi-detach changes "$CS2"
check_eq "the metadata snapshot is released after each query" "-" \
    "$(dmsetup status "$(pool_name "$CBSR")" | awk '{print $7}')"
# What cannot be proven is refused, and changes nothing.
CO=$(thinvdi-create changes --name other --size 64M); COS=$(thinvdi-snapshot changes "$CO" --name other-snap)
expect_failure 64 "another disk's snapshot is refused" thinvdi-changed changes "$COS" "$CV"
expect_failure 64 "a later snapshot as FROM is refused" thinvdi-changed changes "$CS2" "$CS1"
expect_failure 64 "a volume compared with itself is refused" thinvdi-changed changes "$CS1" "$CS1"
expect_failure 64 "FROM must be a snapshot" thinvdi-changed changes "$CV" "$CS2"
expect_failure 2 "an unknown volume" thinvdi-changed changes "$CS1" no-such-volume
thinvdi-detach changes "$CV"
thinvdi-revert changes "$CV" "$CS1"
expect_failure 64 "across a revert: s2 is no longer an earlier state of the volume" thinvdi-changed changes "$CS2" "$CV"
check_eq "the snapshot reverted to still is, with nothing changed yet" "0" \
    "$(thinvdi-changed --json changes "$CS1" "$CV" | jq .changed_bytes)"
# Changed-block tracking as xapi sees it: the flag, inherited by snapshots.
check "thinvdi-set --cbt on" thinvdi-set changes "$CV" --cbt on
check_eq "cbt_enabled in thinvdi-stat --json" "true" "$(thinvdi-stat --json changes "$CV" | jq .cbt_enabled)"
CS3=$(thinvdi-snapshot changes "$CV" --name s3)
check_eq "a snapshot of it has cbt_enabled too" "true" "$(thinvdi-stat --json changes "$CS3" | jq .cbt_enabled)"
check "thinvdi-set --cbt off" thinvdi-set changes "$CV" --cbt off
check_eq "off again" "false" "$(thinvdi-stat --json changes "$CV" | jq .cbt_enabled)"
final_metadata_check "$CBSR"
thinsr-destroy --force "$CBSR"

test_begin "thinvdi-data-destroy frees a snapshot's data and keeps it as the base of changed-block queries"
new_loop CB2 512
DSR=$(thinsr-create --name ddestroy --device "$CB2")
DV=$(thinvdi-create ddestroy --name disk --size 32M)
P=$(thinvdi-attach ddestroy "$DV"); write_pattern "$P" ddbase 8
DS1=$(thinvdi-snapshot ddestroy "$DV" --name s1)
dd if=/dev/urandom of="$P" bs=64K seek=4 count=2 oflag=direct conv=notrunc status=none
pool_used() { dmsetup status "$(pool_name "$DSR")" | awk '{print $6}' | cut -d/ -f1; }
used_before=$(pool_used)
check "thinvdi-data-destroy" thinvdi-data-destroy ddestroy "$DS1"
check_eq "it stays listed, as cbt_metadata, without a thin id, using no space" "cbt_metadata null 0" \
    "$(thinvdi-stat --json ddestroy "$DS1" | jq -r '"\(.kind) \(.thin_id) \(.physical_utilisation)"')"
check_eq "the two blocks only it held are freed" "$((used_before - 2))" "$(pool_used)"
# New writes may take the freed blocks: the answer must not depend on block numbers.
dd if=/dev/urandom of="$P" bs=64K seek=100 count=2 oflag=direct conv=notrunc status=none
DS2=$(thinvdi-snapshot ddestroy "$DV" --name s2)
check_eq "s1 (data destroyed) -> s2: the rewritten and the new blocks" "$(seq_blocks 4-5 100-101)" \
    "$(thinvdi-changed --json ddestroy "$DS1" "$DS2" | blocks_of)"
blkdiscard -o 0 -l $((64 << 10)) "$P"
check_eq "s1 -> the live volume: a discard of a block s1 mapped counts (from the kept map)" \
    "$(seq_blocks 0-0 4-5 100-101)" "$(thinvdi-changed --json ddestroy "$DS1" "$DV" | blocks_of)"
check_eq "--bitmap from it too" "$(seq_blocks 4-5 100-101)" "$(thinvdi-changed --bitmap ddestroy "$DS1" "$DS2" | bitmap_blocks 2>/dev/null)"
expect_failure 64 "it cannot be attached" thinvdi-attach ddestroy "$DS1"
expect_failure 64 "or cloned" thinvdi-clone ddestroy "$DS1"
expect_failure 64 "or used as TO" thinvdi-changed ddestroy "$DS2" "$DS1"
thinvdi-detach ddestroy "$DV"
expect_failure 64 "or reverted to" thinvdi-revert ddestroy "$DV" "$DS1"
expect_failure 64 "a volume's data cannot be destroyed, only a snapshot's" thinvdi-data-destroy ddestroy "$DV"
S2P=$(thinvdi-attach --read-only ddestroy "$DS2")
expect_failure 3 "an attached snapshot's data cannot be destroyed" thinvdi-data-destroy ddestroy "$DS2"
thinvdi-detach ddestroy "$DS2"
check "a second data-destroy changes nothing" thinvdi-data-destroy ddestroy "$DS1"
check "thinsr-check is clean (its thin id is not reported missing)" thinsr-check ddestroy
NEWV=$(thinvdi-create ddestroy --name after --size 4M)
check "a new volume never reuses its thin id" test "$(thinvdi-stat --json ddestroy "$NEWV" | jq .thin_id)" != "$(sqlite3 "file:/run/thinsr/$DSR/catalog/catalog.db?mode=ro" "SELECT thin_id FROM volume WHERE key = '$DS1'")"
check "thinvdi-destroy removes it" thinvdi-destroy ddestroy "$DS1"
check_eq "gone" "" "$(thinvdi-ls --json ddestroy | jq -r --arg k "$DS1" '.[] | select(.key == $k) | .key')"
final_metadata_check "$DSR"
thinsr-destroy --force "$DSR"
