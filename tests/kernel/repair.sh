# thinsr-check and --repair: leaked ids, an open transaction, a transaction id
# mismatch, damaged metadata rebuilt into the spare, and damage that must be
# left alone because the rebuilt copy lost volumes.

test_begin "thinsr-check finds and repairs"
new_loop RD1 512
RSR=$(thinsr-create --name repairs --device "$RD1")
RPOOL=$(pool_name "$RSR")
R1=$(thinvdi-create repairs --name r1 --size 16M)
P=$(thinvdi-attach repairs "$R1"); write_pattern "$P" r1 16; thinvdi-detach repairs "$R1"
R2=$(thinvdi-snapshot repairs "$R1" --name r1-snap)
check "a healthy SR checks clean (exit 0)" thinsr-check repairs
check_eq "--json result clean" "clean" "$(thinsr-check --json repairs | jq -r .result)"

# A leaked thin id: made behind thinsr's back.
dmsetup message "$RPOOL" 0 "create_thin 4000"
thinsr-check repairs >/tmp/rc.out 2>/tmp/rc.err
check_eq "a leaked id is damage (exit 5)" 5 "$?"
check "the report names the leaked id" grep -q "leaked-thin-id: thin id 4000" /tmp/rc.out
check_eq "one line on stderr" 1 "$(wc -l < /tmp/rc.err)"
thinsr-check --repair repairs >/tmp/rc.out 2>&1
check_eq "--repair deletes it (exit 6)" 6 "$?"
check_eq "the pool no longer has id 4000" "" "$(dmsetup message "$RPOOL" 0 reserve_metadata_snap; thin_ls -m --no-headers -o DEV "$(meta_path "$RSR")" | tr -d ' ' | grep -x 4000; dmsetup message "$RPOOL" 0 release_metadata_snap)"
check "clean afterwards" thinsr-check repairs

# A transaction id moved behind thinsr's back.
tid=$(pool_status_field "$RSR" 1)
dmsetup message "$RPOOL" 0 "set_transaction_id $tid $((tid + 5))"
expect_failure 5 "volume operations refuse a transaction id mismatch" thinvdi-create repairs --name x --size 4M
thinsr-check --repair repairs >/dev/null 2>&1
check_eq "--repair records the pool's transaction id (exit 6)" 6 "$?"
check "operations work again" thinvdi-create repairs --name after-tid --size 4M

# An open transaction left by a killed create is reported, then settled by --repair.
THINSR_FAULT=message-1-sent thinvdi-create repairs --name half --size 4M >/dev/null 2>&1
thinsr-check --json repairs > /tmp/rc.json 2>/dev/null
check_eq "an open transaction is reported" "open-transaction" "$(jq -r '.findings[0].problem' /tmp/rc.json)"
thinsr-check --repair repairs >/dev/null 2>&1
check_eq "--repair settles it (exit 6)" 6 "$?"
check "clean afterwards" thinsr-check repairs
check_pool_agrees "$RSR" "after repairs"

# Damaged metadata: attach refuses, --repair rebuilds it into the spare.
thinsr-detach repairs
VG=$(thinsr-ls --json | jq -r --arg u "$RSR" '.[] | select(.uuid == $u) | .volume_group')
HEX=${RSR//-/}
lvchange -ay "$VG/thinsr_${HEX}_meta"
thin_dump "/dev/$VG/thinsr_${HEX}_meta" | grep -c '<device ' > "$THINSR_SCRATCH/devices-before"
dd if=/dev/urandom of="/dev/$VG/thinsr_${HEX}_meta" bs=4096 seek=2 count=1 conv=notrunc oflag=direct status=none
check "the damage is real: thin_check fails" bash -c "! thin_check -q /dev/$VG/thinsr_${HEX}_meta"
lvchange -an "$VG/thinsr_${HEX}_meta"
expect_failure 5 "attach refuses metadata that fails thin_check" thinsr-attach repairs
check "attach's error names thinsr-check --repair" grep -q "thinsr-check --repair" /tmp/ef.err
thinsr-check repairs >/dev/null 2>&1
check_eq "check of the detached SR reports damage (exit 5)" 5 "$?"
thinsr-check --repair --json repairs > /tmp/rc.json 2>/dev/null
check_eq "--repair rebuilds it (exit 6)" 6 "$?"
check_eq "metadata reported repaired" "repaired" "$(jq -r .metadata /tmp/rc.json)"
lvchange -ay "$VG/thinsr_${HEX}_meta" "$VG/thinsr_${HEX}_spare"
check "the new metadata passes thin_check" thin_check -q "/dev/$VG/thinsr_${HEX}_meta"
check_eq "it holds every device" "$(cat "$THINSR_SCRATCH/devices-before")" "$(thin_dump "/dev/$VG/thinsr_${HEX}_meta" | grep -c '<device ')"
check "the damaged copy is kept as the spare" bash -c "! thin_check -q /dev/$VG/thinsr_${HEX}_spare"
check_eq "roles follow the names" "thinsr_${HEX}_meta" "$(lvs --noheadings -o lv_name,lv_tags "$VG" | awk '/thinsr.role=meta/ {print $1}')"
lvchange -an "$VG/thinsr_${HEX}_meta" "$VG/thinsr_${HEX}_spare"
check "the SR attaches after the repair" thinsr-attach repairs
P=$(thinvdi-attach repairs "$R1")
check "volume data intact after the repair (cmp)" same_as_pattern "$P" r1
thinvdi-detach repairs "$R1"
check "clean after the repair" thinsr-check repairs

# A repair that would lose volumes is refused: a zeroed superblock rebuilds empty.
thinsr-detach repairs
lvchange -ay "$VG/thinsr_${HEX}_meta"
dd if=/dev/zero of="/dev/$VG/thinsr_${HEX}_meta" bs=4096 count=1 conv=notrunc oflag=direct status=none
sum_before=$(sha256sum < "/dev/$VG/thinsr_${HEX}_meta")
lvchange -an "$VG/thinsr_${HEX}_meta"
thinsr-check --repair --json repairs > /tmp/rc.json 2>/dev/null
check_eq "an unrepairable SR is damage left (exit 5)" 5 "$?"
check_eq "the finding is not marked repaired" "false" "$(jq '.findings[0].repaired' /tmp/rc.json)"
lvchange -ay "$VG/thinsr_${HEX}_meta"
check_eq "the metadata LV is untouched" "$sum_before" "$(sha256sum < "/dev/$VG/thinsr_${HEX}_meta")"
lvchange -an "$VG/thinsr_${HEX}_meta"
check "thinsr-destroy still removes it" thinsr-destroy --force repairs
