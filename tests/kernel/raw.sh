# Preallocated raw volumes (thinvdi-create --preallocate): a linear LV beside
# the pool, zeroed before use. Checked with lvs, vgs, dmsetup table/status,
# cmp against /dev/zero and the written pattern, qemu-img compare.

raw_lv() { echo "thinsr_${1//-/}_r${2//-/}"; }   # SR-UUID VOLUME-UUID (the shell drops the dashes: echo | tr was more processes)
raw_uuid() { thinvdi-stat --json "$1" "$2" | jq -r .uuid; }                  # SR KEY
raw_lv_mib() { lvs --noheadings --units m --nosuffix -o lv_size "rawvg/$1" 2>/dev/null | awk '{printf "%d", $1}'; }
raw_lv_count() { lvs --noheadings -o lv_name rawvg 2>/dev/null | grep -c "_r"; }
# wait_trace FILE STEP: until a traced process has reached STEP, up to 30 s.
wait_trace() { for _ in $(seq 300); do grep -qx "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1; }

test_begin "thinvdi-create --preallocate: a zeroed linear LV beside the pool"
new_loop RW1 700
pvcreate -q "$RW1" >/dev/null && vgcreate -q rawvg "$RW1" >/dev/null
RSR=$(thinsr-create --name raw --vg rawvg --pool-size 128M)
# Old data in the free extents the raw volume will take: it must never read back through the new volume.
lvcreate -q -y -L 52M -n stale rawvg >/dev/null
stale_extents=$(lvs --noheadings -o seg_pe_ranges rawvg/stale | tr -d ' ')
write_pattern /dev/rawvg/stale rawstale 52
lvremove -q -y rawvg/stale >/dev/null
RV=$(thinvdi-create raw --name db --size 50M --preallocate --progress=json 2> "$THINSR_SCRATCH/raw-progress")
check_eq "it prints the key" db "$RV"
RU=$(raw_uuid raw db)
RLV=$(raw_lv "$RSR" "$RU")
check_eq "lvs: a linear LV of 52 MiB (50 MiB in whole 4 MiB extents), tagged as the SR's raw volume" \
    "linear 52 yes yes" "$(lvs --noheadings --units m --nosuffix -o segtype,lv_size,lv_tags "rawvg/$RLV" | awk '{
        printf "%s %d %s %s", $1, $2, ($3 ~ /thinsr.role=raw/ ? "yes" : "no"), ($3 ~ /thinsr.sr='"$RSR"'/ ? "yes" : "no")}')"
check_eq "it took the extents that held the removed LV's data" "$stale_extents" \
    "$(lvs --noheadings -o seg_pe_ranges "rawvg/$RLV" | tr -d ' ')"
check "every byte of it reads zero (cmp with /dev/zero)" same_bytes $((52 << 20)) "/dev/rawvg/$RLV" /dev/zero
check_eq "the zeroing reported progress as JSON, to the whole LV" "zero $((52 << 20))" \
    "$(tail -n 1 "$THINSR_SCRATCH/raw-progress" | jq -r '"\(.operation) \(.done)"')"
check_eq "thinvdi-stat: preallocated, no thin id, all of it used" "true null $((50 << 20)) $((50 << 20))" \
    "$(thinvdi-stat --json raw db | jq -r '"\(.preallocated) \(.thin_id) \(.physical_utilisation) \(.virtual_size)"')"
check_eq "no thin device was made for it (thin_ls)" 0 "$(thin_count "$RSR")"
check_pool_agrees "$RSR" "with a raw volume"

test_begin "attach, data path, detach and attach again, SR detach and attach"
RP=$(thinvdi-attach raw db)
check_eq "the volume's device is a linear table over the LV, 50 MiB long" \
    "0 102400 linear $(dmsetup info -c --noheadings -o major,minor "rawvg-$RLV" | tr -d ' ') 0" \
    "$(dmsetup table "thinsr_${RSR//-/}_v${RU//-/}")"
write_pattern "$RP" rawdata 40
thinvdi-detach raw db
RP=$(thinvdi-attach raw db)
check "what was written reads back after detach and attach (cmp)" same_as_pattern "$RP" rawdata
thinvdi-detach raw db
check "thinsr-detach with a raw volume" thinsr-detach raw
check_eq "the raw LV is inactive while the SR is detached" "" \
    "$(lvs --noheadings -o lv_active "rawvg/$RLV" | tr -d ' ')"
check "thinsr-attach" bash -c "thinsr-attach raw >/dev/null"
RP=$(thinvdi-attach raw db)
check "and its data is still there (cmp)" same_as_pattern "$RP" rawdata

test_begin "space: SR.stat counts the pool, the raw volumes and the VG's free extents (vgs, dmsetup status)"
read -r _ _ _ _ _ used_data_total _ < <(dmsetup status "$(pool_name "$RSR")")
vg_free=$(vgs --noheadings --units b --nosuffix -o vg_free rawvg | tr -d ' ')
raw_bytes=$(lvs --noheadings --units b --nosuffix -o lv_size "rawvg/$RLV" | tr -d ' ')
pool_free=$(( (${used_data_total#*/} - ${used_data_total%/*}) * 65536 ))
check_eq "free_space = pool free + vg free; total_space = pool data + raw LVs + vg free" \
    "$(( pool_free + vg_free )) $(( ${used_data_total#*/} * 65536 + raw_bytes + vg_free ))" \
    "$(thinsr-stat --json raw | jq -r '"\(.free_space) \(.total_space)"')"
check_eq "and the parts, as thinsr-stat shows them" "$pool_free $vg_free $raw_bytes" \
    "$(thinsr-stat --json raw | jq -r '"\(.pool_free) \(.vg_free) \(.preallocated_bytes)"')"
make -s install-plugins DESTDIR="$THINSR_SCRATCH/root" >/dev/null
check "the volume plugin's SR.stat gives the same free and total" env THINSR_TOOLS_DIR="$THINSR_SCRATCH/bin" bash -c "
    echo '{\"dbg\": \"t\", \"sr\": \"$RSR\"}' \
    | $THINSR_SCRATCH/root/usr/libexec/xapi-storage-script/volume/org.xen.xapi.storage.thinsr/SR.stat --json \
    | jq -e '.free_space == $(( pool_free + vg_free )) and .total_space == $(( ${used_data_total#*/} * 65536 + raw_bytes + vg_free ))'"

test_begin "the SMAPIv3 plugins drive a raw volume as xapi would (Volume.stat, Datapath.attach and activate)"
thinvdi-detach raw db
plugins=$THINSR_SCRATCH/root/usr/libexec/xapi-storage-script
plugin() { # plugin DIR METHOD JSON: one call as xapi-storage-script makes it
    echo "$3" | env THINSR_TOOLS_DIR="$THINSR_SCRATCH/bin" "$plugins/$1/$2" --json
}
check_eq "Volume.stat: its key and size" "db $((50 << 20))" \
    "$(plugin volume/org.xen.xapi.storage.thinsr Volume.stat '{"dbg": "t", "sr": "'"$RSR"'", "key": "db"}' | jq -r '"\(.key) \(.virtual_size)"')"
uri=$(thinvdi-stat --json raw db | jq -r '.uri[0]')
block=$(plugin datapath/thinsr Datapath.attach '{"dbg": "t", "uri": "'"$uri"'", "domain": "3"}' |
        jq -r '.implementations[] | select(.[0] == "BlockDevice") | .[1].path')
check "Datapath.activate" bash -c "echo '{\"dbg\": \"t\", \"uri\": \"$uri\", \"domain\": \"3\"}' |
    env THINSR_TOOLS_DIR=$THINSR_SCRATCH/bin $plugins/datapath/thinsr/Datapath.activate --json >/dev/null"
check_eq "the device it hands blkback is the linear table over the LV" linear \
    "$(dmsetup table "$(basename "$(readlink "$block")")" | awk '{print $3}')"
check "and reads the volume's data (cmp)" same_as_pattern "$block" rawdata
for method in Datapath.deactivate Datapath.detach; do
    plugin datapath/thinsr $method '{"dbg": "t", "uri": "'"$uri"'", "domain": "3"}' >/dev/null
done
check_eq "Datapath.detach leaves it detached" false "$(thinvdi-stat --json raw db | jq -r .attached)"
RP=$(thinvdi-attach raw db)

test_begin "thinsr-check compares raw volumes' LVs with their rows"
check "an SR with a raw volume checks clean" thinsr-check raw
lvcreate -q -y -L 4M -n stray --addtag "thinsr.sr=$RSR" --addtag thinsr.role=raw rawvg >/dev/null
thinsr-check --json raw > "$THINSR_SCRATCH/raw-check.json" 2>/dev/null
check_status=$?
check_eq "an LV with the SR's raw tags that no volume names is found, exit 5" "5 raw-lv-orphaned" \
    "$check_status $(jq -r '.findings[].problem' "$THINSR_SCRATCH/raw-check.json")"
lvremove -q -y rawvg/stray >/dev/null

test_begin "resize grows the LV and zeroes the new part; what a raw volume cannot do is refused"
# Old data in the extents the grown LV will take, as before the create.
lvcreate -q -y -L 40M -n stale2 rawvg >/dev/null
stale2_first=$(lvs --noheadings -o seg_pe_ranges rawvg/stale2 | tr -d ' ' | sed 's/.*://; s/-.*//')
write_pattern /dev/rawvg/stale2 rawstale2 40
lvremove -q -y rawvg/stale2 >/dev/null
check "thinvdi-resize raw db 80M (attached)" thinvdi-resize raw db 80M --progress=none
check "the grown LV took the extents that held the removed LV's data" bash -c "
    lvs --noheadings -o seg_pe_ranges rawvg/$RLV | tr ' ' '\n' | sed -n 's/.*:\([0-9]*\)-\([0-9]*\)$/\1 \2/p' |
    awk -v first=$stale2_first '\$1 <= first && first <= \$2 {found = 1} END {exit !found}'"
check_eq "lvs: 80 MiB" 80 "$(raw_lv_mib "$RLV")"
check_eq "the attached device grew at once (blockdev)" $((80 << 20)) "$(blockdev --getsize64 "$RP")"
check "the new 30 MiB read zero" same_bytes $((30 << 20)) <(dd if="$RP" bs=1M skip=50 count=30 iflag=direct status=none) /dev/zero
check "and the old data is untouched" same_as_pattern "$RP" rawdata
expect_failure 64 "shrinking is refused" thinvdi-resize raw db 40M
expect_failure 4 "growing past the VG's free space is refused before anything changes" thinvdi-resize raw db 2G
rm -f "$THINSR_SCRATCH/raw-trace"
THINSR_FAULT_PAUSE=zeroed-piece:20000 THINSR_FAULT_TRACE=$THINSR_SCRATCH/raw-trace \
    thinvdi-resize raw db 150M --progress=none 2>/dev/null &
grower=$!
check "a grow by 70 MiB is zeroing its new part" wait_trace "$THINSR_SCRATCH/raw-trace" zeroed-piece
check_eq "meanwhile another grow of it is refused (exit 3)" 3 "$(thinvdi-resize raw db 100M 2>/dev/null; echo $?)"
kill -INT $grower; wait $grower
check_eq "SIGINT cancels the grow (exit 130)" 130 "$?"
check_eq "the volume kept its size (thinvdi-stat, blockdev)" "$((80 << 20)) $((80 << 20))" \
    "$(thinvdi-stat --json raw db | jq -r .virtual_size) $(blockdev --getsize64 "$RP")"
check "and its data" same_as_pattern "$RP" rawdata
THINSR_FAULT=zeroed-piece thinvdi-resize raw db 150M --progress=none 2>/dev/null
check "after a grow killed mid-zeroing, the next grow works" thinvdi-resize raw db 96M --progress=none
check_eq "to the size asked" $((96 << 20)) "$(blockdev --getsize64 "$RP")"
check "its new part reads zero" same_bytes $((16 << 20)) <(dd if="$RP" bs=1M skip=80 count=16 iflag=direct status=none) /dev/zero
expect_failure 64 "snapshot is refused (a raw LV shares no blocks)" thinvdi-snapshot raw db
expect_failure 64 "clone is refused" thinvdi-clone raw db
expect_failure 64 "changed-block tracking is refused" thinvdi-set raw db --cbt on
expect_failure 4 "preallocating more than the VG has free is refused before anything is written" \
    thinvdi-create raw --name huge --size 2G --preallocate
expect_failure 64 "--preallocate of 0 bytes is refused" thinvdi-create raw --name empty --size 0 --preallocate

test_begin "export and import --preallocate (qemu-img compare)"
thinvdi-detach raw db
check "thinvdi-export of a raw volume to qcow2" thinvdi-export raw db "$THINSR_SCRATCH/raw.qcow2" --progress=none
check "the image equals the LV (qemu-img compare)" qemu-img compare -q -f raw -F qcow2 "/dev/rawvg/$RLV" "$THINSR_SCRATCH/raw.qcow2"
IV=$(thinvdi-import raw --name restored --preallocate "$THINSR_SCRATCH/raw.qcow2" --progress=none)
check_eq "thinvdi-import --preallocate makes a raw volume of the image's size" "true $((96 << 20))" \
    "$(thinvdi-stat --json raw "$IV" | jq -r '"\(.preallocated) \(.virtual_size)"')"
ILV=$(raw_lv "$RSR" "$(raw_uuid raw "$IV")")
check "its LV holds the image (qemu-img compare)" qemu-img compare -q -f raw -F qcow2 "/dev/rawvg/$ILV" "$THINSR_SCRATCH/raw.qcow2"
check "and it is detached, ready for use" bash -c "thinvdi-stat --json raw '$IV' | jq -e '.attached == false'"

test_begin "cancel during zeroing: SIGINT, thinvdi-destroy from another shell; a killed create is removed next time"
before_lvs=$(raw_lv_count)
rm -f "$THINSR_SCRATCH/raw-trace"
THINSR_FAULT_PAUSE=zeroed-piece:20000 THINSR_FAULT_TRACE=$THINSR_SCRATCH/raw-trace \
    thinvdi-create raw --name cancelme --size 65M --preallocate --progress=none >/dev/null 2>"$THINSR_SCRATCH/raw-cancel.err" &
creator=$!
check "the create is zeroing" wait_trace "$THINSR_SCRATCH/raw-trace" zeroed-piece
kill -INT $creator; wait $creator
check_eq "SIGINT cancels it with exit 130" 130 "$?"
check_eq "with one line on stderr" 1 "$(wc -l < "$THINSR_SCRATCH/raw-cancel.err")"
check_eq "its LV is gone (lvs)" "$before_lvs" "$(raw_lv_count)"
check "and so is its volume" bash -c "thinvdi-ls --json raw | jq -e 'all(.name != \"cancelme\")'"
rm -f "$THINSR_SCRATCH/raw-trace"
THINSR_FAULT_PAUSE=zeroed-piece:20000 THINSR_FAULT_TRACE=$THINSR_SCRATCH/raw-trace \
    thinvdi-create raw --name destroyme --size 65M --preallocate --progress=none >/dev/null 2>&1 &
creator=$!
check "another create is zeroing" wait_trace "$THINSR_SCRATCH/raw-trace" zeroed-piece
check "thinvdi-destroy of it from another shell succeeds" thinvdi-destroy raw destroyme
wait $creator
check_eq "the create ends cancelled (exit 130)" 130 "$?"
check_eq "nothing of it is left (lvs)" "$before_lvs" "$(raw_lv_count)"
THINSR_FAULT=zeroed-piece thinvdi-create raw --name killme --size 65M --preallocate --progress=none >/dev/null 2>&1
check_eq "a create killed mid-zeroing (SIGKILL) leaves its LV for now" "$(( before_lvs + 1 ))" "$(raw_lv_count)"
check "the next writer removes it" bash -c "thinvdi-create raw --name after --size 1M >/dev/null"
check_eq "its LV is gone (lvs)" "$before_lvs" "$(raw_lv_count)"
check "and so is its volume" bash -c "thinvdi-ls --json raw | jq -e 'all(.name != \"killme\")'"
THINSR_FAULT=zeroed-piece thinvdi-create raw --name killme2 --size 65M --preallocate --progress=none >/dev/null 2>&1
check "thinvdi-destroy of a create killed mid-zeroing succeeds (its recovery removes it)" thinvdi-destroy raw killme2
check_eq "and nothing of it is left (lvs)" "$before_lvs" "$(raw_lv_count)"

test_begin "destroy removes the LV; a destroy killed half way is finished by the next writer"
free_before=$(vgs --noheadings --units m --nosuffix -o vg_free rawvg | awk '{printf "%d", $1}')
db_mib=$(raw_lv_mib "$RLV")
check "thinvdi-destroy raw db" thinvdi-destroy raw db
check "the LV is gone (lvs)" bash -c "! lvs rawvg/$RLV >/dev/null 2>&1"
check_eq "its LV's $db_mib MiB are free in the VG again (vgs)" $(( free_before + db_mib )) \
    "$(vgs --noheadings --units m --nosuffix -o vg_free rawvg | awk '{printf "%d", $1}')"
THINSR_FAULT=raw-removal-recorded thinvdi-destroy raw "$IV" 2>/dev/null
check "a destroy killed after recording the removal left the LV" lvs "rawvg/$ILV"
check "the next writer finishes it" bash -c "thinvdi-create raw --name after2 --size 1M >/dev/null"
check "the LV is gone (lvs)" bash -c "! lvs rawvg/$ILV >/dev/null 2>&1"
check "and the volume" bash -c "thinvdi-ls --json raw | jq -e 'all(.key != \"$IV\")'"

test_begin "thinsr-destroy --force removes raw volumes with the SR"
thinvdi-create raw --name last --size 20M --preallocate --progress=none >/dev/null
final_metadata_check "$RSR"
check_eq "no LV of the SR is left in the VG (lvs)" "" "$(lvs --noheadings -o lv_name rawvg | grep thinsr_ || true)"
vgremove -q -y rawvg >/dev/null
free_loop "$RW1"
