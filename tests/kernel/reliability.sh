# Reliability, round 2 (issue 11): revert only within a lineage, the snapshot's
# suspend window, reads after a dead writer, locks that let detach race readers,
# the write-ahead log seen offline, text from users, 0-byte volumes and the
# datapath's device node. Sourced by suite.sh.

dm_name_of() { local link; link=$(readlink "$1"); echo "${link##*/}"; }   # a /dev/thinsr link -> its dm name
suspended_state() { dmsetup info -c --noheadings -o suspended "$(dm_name_of "$1")"; }

test_begin "revert: only to a snapshot of the volume's own lineage"
new_loop RD1 512
RSR=$(thinsr-create --name rel --device "$RD1")
RA=$(thinvdi-create rel --name a --size 16M)
RB=$(thinvdi-create rel --name b --size 16M)
P=$(thinvdi-attach rel "$RA"); write_pattern "$P" rel-a1 16; thinvdi-detach rel "$RA"
RAS=$(thinvdi-snapshot rel "$RA" --name a-snap)
P=$(thinvdi-attach rel "$RA"); write_pattern "$P" rel-a2 16; thinvdi-detach rel "$RA"
P=$(thinvdi-attach rel "$RB"); write_pattern "$P" rel-b 16; thinvdi-detach rel "$RB"
RBS=$(thinvdi-snapshot rel "$RB" --name b-snap)
RAC=$(thinvdi-clone rel "$RAS" --name a-clone)
expect_failure 64 "reverting a to another disk's snapshot is refused" thinvdi-revert rel "$RA" "$RBS"
expect_failure 64 "reverting a to a writable volume is refused" thinvdi-revert rel "$RA" "$RB"
expect_failure 64 "reverting b to a's snapshot is refused" thinvdi-revert rel "$RB" "$RAS"
expect_failure 64 "reverting a's clone to b's snapshot is refused" thinvdi-revert rel "$RAC" "$RBS"
P=$(thinvdi-attach --read-only rel "$RA"); check "a still holds its own data (cmp)" same_as_pattern "$P" rel-a2
thinvdi-detach rel "$RA"

test_begin "revert to a snapshot that is attached and being read"
SP=$(thinvdi-attach --read-only rel "$RAS")
( while dd if="$SP" of=/dev/null bs=1M iflag=direct status=none; do :; done ) & READER=$!
strace -f -qq -o "$THINSR_SCRATCH/revert.trace" -e trace=ioctl thinvdi-revert rel "$RA" "$RAS" >/dev/null 2>&1
check_eq "the revert succeeded" "0" "$?"
kill "$READER" 2>/dev/null; wait "$READER" 2>/dev/null
check "the attached snapshot was suspended and resumed around create_snap" \
    bash -c "awk '/DM_DEV_SUSPEND/ && /$(dm_name_of "$SP")/ {n++} /DM_TARGET_MSG/ && n == 1 {m++} END {exit !(n == 2 && m >= 1)}' '$THINSR_SCRATCH/revert.trace'"
check_eq "the snapshot is not left suspended" "Active" "$(suspended_state "$SP")"
check "the snapshot still reads its data (cmp)" same_as_pattern "$SP" rel-a1
thinvdi-detach rel "$RAS"
P=$(thinvdi-attach --read-only rel "$RA"); check "a now holds the snapshot's data (cmp)" same_as_pattern "$P" rel-a1
thinvdi-detach rel "$RA"
check "a clone reverts to the snapshot it was cloned from" thinvdi-revert rel "$RAC" "$RAS"
check_pool_agrees "$RSR" "after the reverts"

test_begin "a snapshot's suspend window holds the pool message, not the catalog's fsyncs"
OV=$(thinvdi-create rel --name busy --size 16M)
OP=$(thinvdi-attach rel "$OV")
( while dd if=/dev/urandom of="$OP" bs=64K count=16 oflag=direct status=none; do :; done ) & WRITER=$!
strace -f -qq -o "$THINSR_SCRATCH/snap.trace" -e trace=ioctl,fsync,fdatasync thinvdi-snapshot rel "$OV" --name busy-snap >/dev/null 2>&1
check_eq "the snapshot of a volume being written succeeded" "0" "$?"
kill "$WRITER" 2>/dev/null; wait "$WRITER" 2>/dev/null
window=$(awk -v dev="$(dm_name_of "$OP")" '/DM_DEV_SUSPEND/ && index($0, dev) {n++; next} n == 1' "$THINSR_SCRATCH/snap.trace")
check_eq "one pool message inside the window" "1" "$(grep -c DM_TARGET_MSG <<<"$window")"
check_eq "no fsync inside the window" "0" "$(grep -cE 'fsync|fdatasync' <<<"$window")"
check "the catalog was fsynced outside it" grep -qE 'fsync|fdatasync' "$THINSR_SCRATCH/snap.trace"

test_begin "a kill inside the suspend window: the next command of any kind resumes the origin"
for reader in "thinvdi-ls rel" "thinsr-stat rel" "thinvdi-stat rel $OV"; do
    THINSR_FAULT=origin-suspended thinvdi-snapshot rel "$OV" --name killed >/dev/null 2>&1
    check_eq "the kill left the origin suspended" "Suspended" "$(suspended_state "$OP")"
    $reader >/dev/null
    check_eq "$reader (a read) resumed it" "Active" "$(suspended_state "$OP")"
done
check "the origin takes writes again" timeout 20 dd if=/dev/zero of="$OP" bs=64K count=1 oflag=direct status=none
thinvdi-detach rel "$OV"
check_pool_agrees "$RSR" "after the killed snapshots"

test_begin "a read after a killed create lists what the kernel holds"
for step in message-1-sent transaction-id-set; do
    THINSR_FAULT=$step thinvdi-create rel --name half --size 4M >/dev/null 2>&1
    check_pool_agrees "$RSR" "thinvdi-ls right after a create killed at $step"
done

test_begin "human output escapes control characters; JSON is exact"
EVIL=$'evil\e[31mred\a\x7f'
EK=$(thinvdi-create rel --name "$EVIL" --size 4M)
thinvdi-set rel "$EK" --description $'line1\nline2\e]0;title\a' >/dev/null
check "thinvdi-stat prints no control byte" bash -c "! thinvdi-stat rel '$EK' | tr -d '\n' | grep -q '[[:cntrl:]]'"
check "thinvdi-stat shows them escaped" bash -c "thinvdi-stat rel '$EK' | grep -qF 'evil\\x1b[31mred\\x07\\x7f'"
check "thinvdi-ls prints no control byte" bash -c "! thinvdi-ls rel | tr -d '\n' | grep -q '[[:cntrl:]]'"
check "thinvdi-tree prints no control byte" bash -c "! thinvdi-tree rel | tr -d '\n' | grep -q '[[:cntrl:]]'"
check_eq "JSON keeps the name exactly" "$(printf '%s' "$EVIL" | od -An -tx1)" \
    "$(thinvdi-stat --json rel "$EK" | jq -j .name | od -An -tx1)"
thinsr-set rel --description $'sr\e[2Jdesc' >/dev/null
check "thinsr-stat and thinsr-ls print no control byte" \
    bash -c "! { thinsr-stat rel; thinsr-ls; } | tr -d '\n' | grep -q '[[:cntrl:]]'"
thinvdi-destroy rel "$EK" >/dev/null

test_begin "SR names that look like uuids; PV labels over other data"
new_loop ND1 256
expect_failure 64 "an SR named like a uuid is refused at create" thinsr-create --name "$(cat /proc/sys/kernel/random/uuid)" --device "$ND1"
expect_failure 64 "and at thinsr-set" thinsr-set rel --name "$(cat /proc/sys/kernel/random/uuid)"
pvcreate -q "$ND1" >/dev/null
truncate -s 16M "$THINSR_SCRATCH/fs.img"; mkfs.ext4 -q -F "$THINSR_SCRATCH/fs.img"
dd if="$THINSR_SCRATCH/fs.img" of="$ND1" bs=1024 skip=1 seek=1 count=1 conv=notrunc status=none
check "blkid sees the filesystem under the label" bash -c "blkid -p -u noraid '$ND1' | grep -q 'TYPE=\"ext4\"'"
expect_failure 3 "a PV label without a VG over a filesystem is refused" thinsr-create --name pvfs --device "$ND1"
wipefs -q -a "$ND1"; pvcreate -q "$ND1" >/dev/null
check "a bare PV label without a VG is reused" thinsr-create --name pvbare --device "$ND1"
thinsr-detach pvbare && thinsr-destroy --force pvbare

test_begin "0-byte volumes, and the datapath's device node before activate"
Z=$(thinvdi-create rel --name zero --size 0)
check_eq "a 0-byte volume is created" "0" "$(thinvdi-stat --json rel "$Z" | jq .virtual_size)"
ZP=$(thinvdi-attach rel "$Z")
check "it attaches as a device node" test -b "$ZP"
check_eq "without a table (the kernel opens no 0-length device)" "" "$(dmsetup table "$(dm_name_of "$ZP")")"
thinvdi-detach rel "$Z"
check "it grows" thinvdi-resize rel "$Z" 8M
ZP=$(thinvdi-attach rel "$Z"); check_eq "and attaches at its new size" "8388608" "$(blockdev --getsize64 "$ZP")"
thinvdi-detach rel "$Z"; check "and is destroyed" thinvdi-destroy rel "$Z"
NV=$(thinvdi-create rel --name node --size 8M)
NP=$(thinvdi-attach --inactive rel "$NV")
check "--inactive makes the block device" test -b "$NP"
check_eq "with an error table: no thin device is opened" "error" "$(dmsetup table "$(dm_name_of "$NP")" | awk '{print $3}')"
check_eq "of the volume's size" "8388608" "$(blockdev --getsize64 "$NP")"
check "whose I/O fails until it is activated" bash -c "! dd if='$NP' of=/dev/null bs=4K count=1 iflag=direct status=none 2>/dev/null"
expect_failure 3 "the volume is attached: destroy is refused" thinvdi-destroy rel "$NV"
NP2=$(thinvdi-attach --read-only rel "$NV")
check_eq "attach loads the volume into the node, at the same path" "$NP" "$NP2"
check "a read-only thin table is live" bash -c "dmsetup table '$(dm_name_of "$NP")' | grep -q ' thin ' && [ \$(blockdev --getro '$NP') = 1 ]"
check_eq "of the volume's size" "8388608" "$(blockdev --getsize64 "$NP")"
thinvdi-detach rel "$NV"
check "thinsr-check clean" thinsr-check rel

test_begin "lifecycle operations are serialized; detach races readers and another SR's traffic"
new_loop LD1 256
new_loop LD2 256
L1=$(thinsr-create --name race1 --device "$LD1")
L2=$(thinsr-create --name race2 --device "$LD2")
LX=$(thinvdi-create race1 --name x --size 4M)
STOP=$THINSR_SCRATCH/stop-race; rm -f "$STOP"
race_readers() { while [ ! -e "$STOP" ]; do thinvdi-ls race1; thinsr-stat "$L1"; thinvdi-stat race1 "$LX"; done >/dev/null 2>&1; }
race_writer() { while [ ! -e "$STOP" ]; do thinvdi-set race1 "$LX" --description w; done >/dev/null 2>&1; }
race_traffic() {
    local k
    while [ ! -e "$STOP" ]; do k=$(thinvdi-create race2 --name t --size 4M) && thinvdi-destroy race2 "$k"; thinvdi-ls race2; done >/dev/null 2>&1
}
race_readers & R1=$!; race_readers & R2=$!; race_writer & R3=$!; race_traffic & R4=$!
cycles=0
for _ in 1 2 3 4 5; do
    thinsr-detach race1 >/dev/null && ! mountpoint -q "/run/thinsr/$L1/catalog" && thinsr-attach race1 >/dev/null \
        && cycles=$((cycles + 1))
done
touch "$STOP"; wait "$R1" "$R2" "$R3" "$R4"
check_eq "five detach/attach cycles under readers, a writer and another SR's traffic" "5" "$cycles"
thinsr-attach "$L1" & A1=$!; thinsr-attach "$L1" & A2=$!; thinsr-check "$L1" >/dev/null & A3=$!
wait "$A1"; s1=$?; wait "$A2"; s2=$?; wait "$A3"; s3=$?
check_eq "two attaches and a check at once all succeed" "0 0 0" "$s1 $s2 $s3"
thinsr-detach "$L1" & D1=$!; thinsr-detach "$L1" & D2=$!
wait "$D1"; s1=$?; wait "$D2"; s2=$?
check_eq "two detaches at once both succeed" "0 0" "$s1 $s2"
check "race1 checks clean offline" thinsr-check race1
check "race1 attaches again with its volume" bash -c "thinsr-attach race1 >/dev/null && thinvdi-stat race1 '$LX' >/dev/null"
check "race2 checks clean" thinsr-check race2
check_pool_agrees "$L2" "race2 after the traffic"
thinsr-detach race1; thinsr-destroy --force race1; thinsr-detach race2; thinsr-destroy --force race2

test_begin "offline reads see the write-ahead log a crashed host left"
new_loop WD1 256
WSR=$(thinsr-create --name wal --device "$WD1")
WHEX=${WSR//-/}
THINSR_FAULT=transaction-settled thinvdi-create wal --name last --size 4M >/dev/null 2>&1
check "the kill left the commit in the log" test -s "/run/thinsr/$WSR/catalog/catalog.db-wal"
# The host "crashes": the pool, the mount and the run state go, and nothing checkpoints the log.
dmsetup remove "$(pool_name "$WSR")"
umount "/run/thinsr/$WSR/catalog" "/run/thinsr/$WSR/catalog-copy"
vgchange -q -an "thinsr_$WHEX" >/dev/null
rm -rf "/run/thinsr/$WSR" "/dev/thinsr/$WSR"
expect_failure 3 "thinsr-destroy counts the volume only the log holds" thinsr-destroy "$WSR"
check "the offline thinsr-check finds the volume's thin id referenced (clean)" thinsr-check "$WSR"
check "attach" thinsr-attach "$WSR"
check_eq "the volume is there" "last" "$(thinvdi-ls --json "$WSR" | jq -r '.[].name')"
final_metadata_check "$WSR"

test_begin "the catalog: a reserve refuses new volumes before it fills, thinsr-extend grows it, e2fsck before mount"
new_loop CD1 512
CSR=$(thinsr-create --name cat --device "$CD1" --pool-size 128M)
CHEX=${CSR//-/}
CM=/run/thinsr/$CSR/catalog
thinvdi-create cat --name first --size 4M >/dev/null
catalog_lv_bytes() { lvs --noheadings --units b --nosuffix -o lv_size "thinsr_$CHEX/thinsr_${CHEX}_catalog" | tr -d ' '; }
# A file fills the catalog's filesystem to 2 MiB short of full, as a huge catalog would.
fallocate -l $(( $(df -B1 --output=avail "$CM" | tail -n 1) - (2 << 20) )) "$CM/filler"
expect_failure 4 "a new volume is refused while the catalog is down to its reserve" thinvdi-create cat --name second --size 4M
lv_before=$(catalog_lv_bytes); fs_before=$(df -B1 --output=size "$CM" | tail -n 1)
check "thinsr-extend grows the SR" thinsr-extend cat --size +8M
check_eq "the catalog LV doubled (it was over half full)" "$((lv_before * 2))" "$(catalog_lv_bytes)"
check "its filesystem grew with it (resize2fs, mounted)" test "$(df -B1 --output=size "$CM" | tail -n 1)" -gt "$((fs_before * 3 / 2))"
check "a new volume fits again" thinvdi-create cat --name second --size 4M
rm -f "$CM/filler"
thinsr-detach cat
lvchange -ay "thinsr_$CHEX/thinsr_${CHEX}_catalog"
debugfs -w -R "ssv state 2" "/dev/thinsr_$CHEX/thinsr_${CHEX}_catalog" >/dev/null 2>&1
check "the catalog's filesystem is marked with errors" bash -c "dumpe2fs -h /dev/thinsr_$CHEX/thinsr_${CHEX}_catalog 2>/dev/null | grep -q '^Filesystem state: .*error'"
lvchange -an "thinsr_$CHEX/thinsr_${CHEX}_catalog"
check "thinsr-attach runs e2fsck -p first, which checks a filesystem marked with errors" thinsr-attach cat
check "the catalog's filesystem is clean again" bash -c "dumpe2fs -h /dev/mapper/thinsr_$CHEX-thinsr_${CHEX}_catalog 2>/dev/null | grep -q '^Filesystem state: *clean$'"
check_eq "both volumes are there" "2" "$(thinvdi-ls --json cat | jq length)"
check "thinsr-check clean (integrity_check included)" thinsr-check cat
thinsr-detach cat; thinsr-destroy --force cat

test_begin "the catalog copy: a zeroed or corrupted catalog is rebuilt with every volume's key, uuid, name, description, keys and lineage"
new_loop ZD1 512
ZSR=$(thinsr-create --name rebuilt --device "$ZD1")
ZHEX=${ZSR//-/}; ZLV=thinsr_$ZHEX/thinsr_${ZHEX}_catalog; ZCOPY=thinsr_$ZHEX/thinsr_${ZHEX}_catalogcopy
ZBASE=$(thinvdi-create rebuilt --name "base disk" --size 16M)
P=$(thinvdi-attach rebuilt "$ZBASE"); write_pattern "$P" zbase 16; thinvdi-detach rebuilt "$ZBASE"
thinvdi-set rebuilt "$ZBASE" --description "the template's root" --key vdi-type --value user --key "a=b" --value "-x y"
# 50 volumes: a chain of snapshots and clones 40 deep, and branches off the base.
prev=$ZBASE
for i in $(seq 1 49); do
    if ((i % 5 == 0)); then prev=$ZBASE; fi
    if ((i % 3 == 0)); then prev=$(thinvdi-clone rebuilt "$prev" --name "clone $i"); else prev=$(thinvdi-snapshot rebuilt "$prev" --name "snap $i ü"); fi
    if ((i % 10 == 9)); then thinvdi-set rebuilt "$prev" --description "line one
line two" --key n --value "$i" --key "--description" --value "a key like an option"; fi
done
ZCLONE=$(thinvdi-ls --json rebuilt | jq -r '[.[] | select(.name == "clone 48")][0].key')
P=$(thinvdi-attach rebuilt "$ZCLONE"); write_pattern "$P" zclone 4; thinvdi-detach rebuilt "$ZCLONE"
thinvdi-ls --json rebuilt > "$THINSR_SCRATCH/z-ls"; thinvdi-tree rebuilt > "$THINSR_SCRATCH/z-tree"
slurp ZLS "$THINSR_SCRATCH/z-ls"; slurp ZTREE "$THINSR_SCRATCH/z-tree"   # (read by the shell, once)
check_eq "the SR holds 50 volumes" "50" "$(jq length "$THINSR_SCRATCH/z-ls")"
rows() { # rows DB PREFIX: every row of the four tables, as sqlite3 prints them
    sqlite3 "file:$1?mode=ro" "SELECT * FROM ${2}sr; SELECT * FROM ${2}volume ORDER BY uuid; SELECT * FROM ${2}volume_key ORDER BY 1, 2; SELECT * FROM ${2}pending"
}
check "the copy holds every row of the catalog (sqlite3 on both files)" cmp <(rows "/run/thinsr/$ZSR/catalog/catalog.db" "") <(rows "/run/thinsr/$ZSR/catalog-copy/catalog.db" copy_)
thinsr-detach rebuilt
lvchange -ay "$ZLV"; dd if=/dev/zero of="/dev/$ZLV" bs=1M oflag=direct status=none; lvchange -an "$ZLV"
expect_failure 5 "thinsr-attach refuses the zeroed catalog" thinsr-attach rebuilt
expect_failure 5 "thinsr-check reports it" thinsr-check rebuilt
check "and names the rebuild from the copy" grep -q "rebuilds the catalog from its copy" /tmp/ef.out
thinsr-check --repair rebuilt > /tmp/z-repair.out 2>&1
check_eq "thinsr-check --repair rebuilds it (exit 6: repaired)" "6" "$?"
check "it says what it rebuilt" grep -q "rebuilt from the catalog copy (50 volume(s)" /tmp/z-repair.out
check "attach" thinsr-attach rebuilt
check_eq "thinvdi-ls --json is as before" "$ZLS" "$(thinvdi-ls --json rebuilt)"
check_eq "thinvdi-tree is as before" "$ZTREE" "$(thinvdi-tree rebuilt)"
P=$(thinvdi-attach --read-only rebuilt "$ZBASE"); check "the base's data (cmp)" same_as_pattern "$P" zbase; thinvdi-detach rebuilt "$ZBASE"
P=$(thinvdi-attach --read-only rebuilt "$ZCLONE"); check "a deep clone's data (cmp)" same_as_pattern "$P" zclone; thinvdi-detach rebuilt "$ZCLONE"
check "thinsr-check clean" thinsr-check rebuilt
check "the copy holds every row again" cmp <(rows "/run/thinsr/$ZSR/catalog/catalog.db" "") <(rows "/run/thinsr/$ZSR/catalog-copy/catalog.db" copy_)
thinsr-detach rebuilt
copy_rows_detached() { # the copy's rows, read from its LV mounted read-only
    mkdir -p /tmp/zcopy; lvchange -ay "$ZCOPY"; mount -o ro "/dev/$ZCOPY" /tmp/zcopy
    sqlite3 "file:/tmp/zcopy/catalog.db?immutable=1" "SELECT * FROM copy_sr; SELECT * FROM copy_volume ORDER BY uuid; SELECT * FROM copy_volume_key ORDER BY 1, 2"
    umount /tmp/zcopy; lvchange -an "$ZCOPY"
}
ZCOPYROWS=$(copy_rows_detached)
# Corrupt pages inside catalog.db, on a filesystem that is fine; then remove catalog.db.
mkdir -p /tmp/zmnt
for damage in corrupt remove; do
    lvchange -ay "$ZLV"; mount "/dev/$ZLV" /tmp/zmnt
    if [ $damage = corrupt ]; then dd if=/dev/urandom of=/tmp/zmnt/catalog.db bs=4096 seek=1 count=6 conv=notrunc status=none
    else rm /tmp/zmnt/catalog.db; fi
    umount /tmp/zmnt; lvchange -an "$ZLV"
    check "thinsr-attach refuses the catalog ($damage)" bash -c "! thinsr-attach rebuilt"
    check_eq "and leaves the copy as it was ($damage)" "$ZCOPYROWS" "$(copy_rows_detached)"
    check "and every LV inactive again ($damage)" bash -c "! lvs --noheadings -o lv_active thinsr_$ZHEX | grep -q active"
    expect_failure 5 "thinsr-check reports it ($damage)" thinsr-check rebuilt
    check_eq "as catalog-damaged ($damage)" "catalog-damaged" "$(thinsr-check --json rebuilt 2>/dev/null | jq -r '.findings[0].problem')"
    thinsr-check --repair rebuilt >/dev/null 2>&1
    check_eq "thinsr-check --repair rebuilds it (exit 6, $damage)" "6" "$?"
    check "attach ($damage)" thinsr-attach rebuilt
    check_eq "thinvdi-ls --json is as before ($damage)" "$ZLS" "$(thinvdi-ls --json rebuilt)"
    thinsr-detach rebuilt
done
# The copy zeroed: attach makes it anew from the catalog.
lvchange -ay "$ZCOPY"; dd if=/dev/zero of="/dev/$ZCOPY" bs=1M oflag=direct status=none; lvchange -an "$ZCOPY"
expect_failure 5 "thinsr-check reports the zeroed copy" thinsr-check rebuilt
check_eq "as catalog-copy-damaged" "catalog-copy-damaged" "$(thinsr-check --json rebuilt 2>/dev/null | jq -r '.findings[0].problem')"
check "attach works without its copy and makes it anew" thinsr-attach rebuilt
check "the new copy holds every row" cmp <(rows "/run/thinsr/$ZSR/catalog/catalog.db" "") <(rows "/run/thinsr/$ZSR/catalog-copy/catalog.db" copy_)
check "thinsr-check clean" thinsr-check rebuilt
final_metadata_check "$ZSR"
thinsr-destroy --force "$ZSR"

test_begin "a missing catalog LV is damage, not an unfinished create"
new_loop MD1 256
new_loop MD2 256
MSR=$(thinsr-create --name nocat --device "$MD1")
thinvdi-create nocat --name v --size 4M >/dev/null
thinsr-detach nocat
MHEX=${MSR//-/}
lvremove -q -y "thinsr_$MHEX/thinsr_${MHEX}_catalog" >/dev/null
udevadm settle; thinsr-ls >/dev/null   # (udev autoactivation and the first LVM read after an lvremove may still change state)
expect_failure 5 "thinsr-destroy without --force refuses: its volumes cannot be counted" thinsr-destroy "$MSR"
check "the error names the rebuild and --force" grep -q "thinsr-check --repair $MSR rebuilds it from the catalog copy.*thinsr-destroy --force" /tmp/ef.err
expect_failure 64 "thinsr-create --uuid does not wipe it" thinsr-create --uuid "$MSR" --device "$MD2"
expect_failure 5 "thinsr-attach refuses it" thinsr-attach "$MSR"
expect_failure 5 "thinsr-check reports damage" thinsr-check "$MSR"
check_eq "as catalog-missing, not incomplete-sr" "catalog-missing" "$(thinsr-check --json "$MSR" 2>/dev/null | jq -r '.findings[0].problem')"
thinsr-check --repair "$MSR" >/dev/null 2>&1
check_eq "thinsr-check --repair makes the LV again from the copy (exit 6)" "6" "$?"
check "with its role, SR and name tags" bash -c "lvs --noheadings -o lv_tags thinsr_$MHEX/thinsr_${MHEX}_catalog | grep -q 'thinsr.role=catalog.*thinsr.sr=$MSR\|thinsr.sr=$MSR.*thinsr.role=catalog' && thinsr-ls | grep -q nocat"
check "attach" thinsr-attach nocat
check_eq "the volume is back" "v" "$(thinvdi-ls --json nocat | jq -r '.[].name')"
thinsr-detach nocat
lvremove -q -y "thinsr_$MHEX/thinsr_${MHEX}_catalog" "thinsr_$MHEX/thinsr_${MHEX}_catalogcopy" >/dev/null
udevadm settle; thinsr-ls >/dev/null
expect_failure 5 "with its copy gone too, thinsr-destroy without --force still refuses" thinsr-destroy "$MSR"
check "and names vgcfgrestore" grep -q "vgcfgrestore" /tmp/ef.err
check "thinsr-destroy --force removes it" thinsr-destroy --force "$MSR"

test_begin "thinsr-detach --force twice takes away a volume a process holds open"
new_loop HD1 256
HSR=$(thinsr-create --name held --device "$HD1")
HK=$(thinvdi-create held --name v --size 8M)
HP=$(thinvdi-attach held "$HK"); write_pattern "$HP" held 8
HDM=$(dm_name_of "$HP")
exec 7<"$HP"   # this shell holds the device open
expect_failure 3 "--force once refuses a volume held open" thinsr-detach --force held
thinsr-detach --force --force held 2>/tmp/hd.err
check_eq "--force twice detaches the SR" "0" "$?"
check "the holder's I/O now fails with EIO" bash -c "python3 -c \"import os, mmap; fd = os.open('/proc/$$/fd/7', os.O_RDONLY | os.O_DIRECT); os.readv(fd, [mmap.mmap(-1, 4096)])\" 2>&1 | grep -q 'Errno 5'"
check_eq "the device left the SR's names" "" "$(dmsetup ls | awk '{print $1}' | grep -x "$HDM")"
exec 7<&-
check_eq "and is gone once closed (deferred remove)" "" "$(dmsetup ls | grep "${HSR//-/}")"
check "attach again" thinsr-attach held
HP=$(thinvdi-attach --read-only held "$HK")
check "the data is intact (cmp)" same_as_pattern "$HP" held
thinvdi-detach held "$HK"; thinsr-detach held; thinsr-destroy --force held

test_begin "a failed pool: detach --force tears it down; check --repair and attach bring its volumes back"
new_loop FPD 512
FP=$(thinsr-create --name failing --device "$FPD")
FHEX=${FP//-/}
FK=$(thinvdi-create failing --name kept --size 16M)
P=$(thinvdi-attach failing "$FK"); write_pattern "$P" failing 16
# Every I/O to the metadata LV fails from now on: the pool fails at its next commit.
FMETA=thinsr_${FHEX}-thinsr_${FHEX}_meta
dmsetup suspend "$FMETA"
dmsetup load "$FMETA" --table "0 $(blockdev --getsz "/dev/mapper/$FMETA") error"
dmsetup resume "$FMETA"
thinvdi-create failing --name trigger --size 4M >/dev/null 2>&1
check "the pool has failed (dmsetup status)" bash -c "dmsetup status '$(pool_name "$FP")' | grep -q ' Fail'"
expect_failure 3 "detach without --force refuses the attached volume" thinsr-detach failing
thinvdi-detach failing "$FK" 2>/dev/null
thinsr-detach failing >/tmp/fp.out 2>/tmp/fp.err
check_eq "detach without --force refuses the failed pool (exit 5)" "5" "$?"
check "and names --force and thinsr-check --repair" grep -q -- "--force.*thinsr-check --repair" /tmp/fp.err
thinsr-detach --force failing 2>/tmp/fp.err
check_eq "thinsr-detach --force tears the failed SR down" "0" "$?"
check "it warns, naming thinsr-check --repair" grep -q "warning: .*thinsr-check --repair" /tmp/fp.err
check_eq "the SR is detached" "false" "$(thinsr-ls --json | jq -r --arg u "$FP" '.[] | select(.uuid == $u) | .attached')"
check_eq "no device of the SR is left" "" "$(dmsetup ls | grep "$FHEX")"
thinsr-check --repair failing >/tmp/fp.out 2>&1; status=$?
check "thinsr-check --repair offline: clean or repaired (exit 0 or 6)" test "$status" = 0 -o "$status" = 6
check "thinsr-attach after the repair" thinsr-attach failing
P=$(thinvdi-attach --read-only failing "$FK")
check "the committed volume's data is intact (cmp)" same_as_pattern "$P" failing
thinvdi-detach failing "$FK"
check "thinsr-check clean" thinsr-check failing
check_pool_agrees "$FP" "after the failed pool's repair"

test_begin "forged transaction ids: detach --force, offline check --repair, attach"
FPOOL=$(pool_name "$FP")
tid=$(pool_status_field "$FP" 1)
dmsetup message "$FPOOL" 0 "set_transaction_id $tid $((tid + 3))"
expect_failure 5 "detach refuses a pool id the catalog does not know" thinsr-detach failing
check "detach --force" thinsr-detach --force failing
thinsr-check failing >/tmp/fp.out 2>&1
check_eq "the offline check reports it (exit 5)" "5" "$?"
check "as transaction-id-mismatch" grep -q "transaction-id-mismatch" /tmp/fp.out
thinsr-check --repair failing >/tmp/fp.out 2>&1
check_eq "the offline --repair records the pool's id (exit 6)" "6" "$?"
check "attach" thinsr-attach failing
check "the SR works again" thinvdi-create failing --name after --size 4M
# An open transaction whose ids match neither side: a create killed after its
# message, then the pool's id moved on behind thinsr's back.
THINSR_FAULT=message-1-sent thinvdi-create failing --name neither --size 4M >/dev/null 2>&1
tid=$(pool_status_field "$FP" 1)
dmsetup message "$FPOOL" 0 "set_transaction_id $tid $((tid + 5))"
thinvdi-ls failing >/dev/null 2>&1   # (the killed create left its commits in the WAL: this read checkpoints them)
expect_failure 5 "volume operations refuse it" thinvdi-create failing --name x --size 4M
check "detach --force" thinsr-detach --force failing
thinsr-check --json failing >/tmp/fp.json 2>/dev/null
check_eq "the offline check reports the open transaction" "open-transaction" "$(jq -r '.findings[0].problem' /tmp/fp.json)"
thinsr-check --repair failing >/tmp/fp.out 2>&1
check_eq "--repair settles it by what the pool holds (exit 6)" "6" "$?"
check "attach" thinsr-attach failing
check_eq "the create that reached the pool is kept" "1" "$(thinvdi-ls --json failing | jq '[.[] | select(.name == "neither")] | length')"
P=$(thinvdi-attach --read-only failing "$FK")
check "the first volume's data is intact (cmp)" same_as_pattern "$P" failing
thinvdi-detach failing "$FK"
check "thinsr-check clean" thinsr-check failing
final_metadata_check "$FP"
