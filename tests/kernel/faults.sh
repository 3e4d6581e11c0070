# Crash consistency: every mutating operation is run once normally with
# THINSR_FAULT_TRACE to learn its steps from the code, then once per step
# killed there (THINSR_FAULT). Right after the kill, before any other mutating
# call, a read (thinvdi-ls) must list exactly the thin ids the kernel holds.
# After the next command, the operation must have happened entirely or not at
# all, thinsr-check must find the SR clean (thin_check, thin ids against the
# catalog, no open transaction), and a volume nobody operated on must be
# byte-identical.

test_begin "fault injection at every step of every mutating operation"
FAULT_TRIED=0 FAULT_SURVIVED=0
TRACE=$THINSR_SCRATCH/fault-trace
new_loop FD1 1024
new_loop FD2 256
# A pool of half the VG, so thinsr-extend has room to grow into at every step.
FSR=$(thinsr-create --name faults --device "$FD1" --pool-size 512M)
# Observations read the catalog with sqlite3 (cheaper than thinvdi-ls, and not our code).
# (Helpers here run in this shell, through capture, rather than in $(...)
# subshells: a fork costs tens of ms in the UML lab, and each step runs many.)
catalog_query() { sqlite3 "file:/run/thinsr/$FSR/catalog/catalog.db?mode=ro" "$1"; }
key_of() { catalog_query "SELECT key FROM volume WHERE name = '$1' AND state = 'ready' LIMIT 1"; }
count_named() { catalog_query "SELECT count(*) FROM volume WHERE name = '$1' AND state = 'ready'"; }
# destroy_named NAME...: detaches and destroys every ready volume of those
# names, all found by one sqlite3 query (the names are plain words).
destroy_named() {
    local names key keys
    printf -v names "'%s', " "$@"
    catalog_query "SELECT key FROM volume WHERE name IN (${names%, }) AND state = 'ready'" >"$THINSR_SCRATCH/named-keys"
    mapfile -t keys <"$THINSR_SCRATCH/named-keys"
    for key in "${keys[@]}"; do
        [ -n "$key" ] || continue
        if [ -e "/dev/thinsr/$FSR/$key" ]; then thinvdi-detach faults "$key"; fi
        thinvdi-destroy faults "$key" || return
    done
}
# reads_agree: thinvdi-ls's thin ids against the kernel's (thin_ls through a
# metadata snapshot); prints the difference, if any. (The kernel's ids are
# put in numeric order by the shell, as sort -n did: an indexed array lists
# its indexes in order; a line that is not a number is kept as it is, after
# them, so it still shows as a difference.)
reads_agree() {
    local listed kernel="" pool="thinsr_${FSR//-/}_pool" meta id _ seen=() odd="" n
    thinvdi-ls --json faults >"$THINSR_SCRATCH/reads-ls.json"
    capture listed jq -r '[.[].thin_id | select(. != null)] | sort | map(tostring) | join(" ")' "$THINSR_SCRATCH/reads-ls.json"
    meta_path "$FSR" meta
    dmsetup message "$pool" 0 reserve_metadata_snap
    thin_ls -m --no-headers -o DEV "$meta" >"$THINSR_SCRATCH/reads-kernel"
    dmsetup message "$pool" 0 release_metadata_snap
    while read -r id _; do
        if [[ $id =~ ^[0-9]+$ ]]; then seen[10#$id]=$(( ${seen[10#$id]:-0} + 1 )); else odd+=" $id"; fi
    done <"$THINSR_SCRATCH/reads-kernel"
    for id in "${!seen[@]}"; do for ((n = 0; n < seen[id]; n++)); do kernel+="${kernel:+ }$id"; done; done
    kernel+=$odd
    [ "$listed" = "$kernel" ] || echo " thinvdi-ls right after the kill lists '$listed' but the pool holds '$kernel'"
}
content_of() { # content_of NAME: checksum of a volume's contents (attached read-only for the read)
    local key path sum
    capture key key_of "$1"
    capture path thinvdi-attach --read-only faults "$key" || { echo "unattachable"; return; }
    capture sum sha256sum < "$path"
    thinvdi-detach faults "$key"; echo "${sum:0:16}"
}

# The volume nobody operates on, attached throughout.
BY=$(thinvdi-create faults --name bystander --size 16M)
BYP=$(thinvdi-attach faults "$BY")
write_pattern "$BYP" bystander 16

# fault_op NAME: runs NAME_setup, NAME_run, NAME_observe, NAME_next, NAME_cleanup
# (NAME_check: the SR to thinsr-check, by uuid: default the faults SR, whose name sr_set changes).
fault_op() {
    local op=$1 before after steps step status got sr
    "${op}_setup" >/dev/null 2>&1
    capture before "${op}_observe" 2>/dev/null
    rm -f "$TRACE"
    if ! THINSR_FAULT_TRACE=$TRACE "${op}_run" >/tmp/fault.out 2>&1; then
        fail "$op runs cleanly without a fault"; sed 's/^/     | /' /tmp/fault.out | tail -3
    fi
    capture after "${op}_observe" 2>/dev/null
    steps=$(awk '!seen[$0]++' "$TRACE" 2>/dev/null)
    "${op}_cleanup" >/dev/null 2>&1
    if [ -z "$steps" ] || [ "$before" = "$after" ]; then
        fail "$op: no steps traced (${steps:-none}) or no visible effect ($before)"; return
    fi
    for step in $steps; do
        FAULT_TRIED=$((FAULT_TRIED + 1))
        "${op}_setup" >/dev/null 2>&1
        THINSR_FAULT=$step "${op}_run" >/dev/null 2>&1
        status=$?
        local problems="" reads=""
        if type -t "${op}_reads" >/dev/null; then capture -2 reads "${op}_reads"; problems+=$reads; fi
        "${op}_next" >/tmp/fault-next.out 2>&1
        capture got "${op}_observe" 2>/dev/null
        if type -t "${op}_check" >/dev/null; then capture sr "${op}_check"; else sr=$FSR; fi
        [ "$status" = 137 ] || problems+=" exit=$status(not killed)"
        [ "$got" = "$before" ] || [ "$got" = "$after" ] || problems+=" state='$got' (before '$before', after '$after')"
        if [ -n "$sr" ] && ! thinsr-check "$sr" >/tmp/fault-check.out 2>&1; then
            problems+=" thinsr-check: $(grep -v '^SR ' /tmp/fault-check.out | head -2 | tr '\n' ' ')"
        fi
        same_as_pattern "$BYP" bystander || problems+=" bystander changed"
        if [ -z "$problems" ]; then
            FAULT_SURVIVED=$((FAULT_SURVIVED + 1))
            if [ "$got" = "$before" ]; then pass "$op killed at $step: not at all"; else pass "$op killed at $step: entirely"; fi
        else
            fail "$op killed at $step:$problems"
            sed 's/^/     | next: /' /tmp/fault-next.out | tail -2
        fi
        "${op}_cleanup" >/dev/null 2>&1
    done
}

next_create() { thinvdi-create faults --name nx --size 4M; }

vdi_create_setup() { :; }
vdi_create_run() { thinvdi-create faults --name fc --size 8M; }
vdi_create_observe() { count_named fc; }
vdi_create_next() { next_create; }
vdi_create_reads() { reads_agree; }
vdi_create_cleanup() { destroy_named fc nx; }
fault_op vdi_create

vdi_destroy_setup() { thinvdi-create faults --name fd --size 8M; }
vdi_destroy_run() { local key; capture key key_of fd; thinvdi-destroy faults "$key"; }
vdi_destroy_observe() { count_named fd; }
vdi_destroy_next() { next_create; }
vdi_destroy_reads() { reads_agree; }
vdi_destroy_cleanup() { destroy_named fd nx; }
fault_op vdi_destroy

# The origin of snapshots and clones is attached and written, so the steps
# around suspending it are covered too. The next command after a snapshot is
# a read: a kill inside the suspend window must not leave the origin
# suspended until some later write comes along.
SRC=$(thinvdi-create faults --name origin --size 8M)
SRCP=$(thinvdi-attach faults "$SRC")
write_pattern "$SRCP" origin 8
# origin_state NAME: how many NAMEs the catalog holds, and whether the origin is
# suspended (dmsetup, by the name its link pointed to at the start; a link
# that no longer leads there shows as such).
SRC_LINK=$(readlink "$SRCP"); SRC_DM=$(basename "$SRC_LINK")
origin_state() {
    local count suspended
    capture count count_named "$1"
    if [ "$SRCP" -ef "$SRC_LINK" ]; then
        capture suspended dmsetup info -c --noheadings -o suspended "$SRC_DM"
    else
        suspended="link no longer to $SRC_LINK"
    fi
    echo "$count $suspended"
}
vdi_snapshot_setup() { :; }
vdi_snapshot_run() { thinvdi-snapshot faults "$SRC" --name snap1; }
vdi_snapshot_observe() { origin_state snap1; }
vdi_snapshot_next() { thinvdi-ls faults >/dev/null; timeout 10 dd if="$SRCP" of=/dev/null bs=1M count=1 iflag=direct status=none; }
vdi_snapshot_reads() { reads_agree; }
vdi_snapshot_cleanup() { destroy_named snap1 nx; }
fault_op vdi_snapshot

vdi_clone_setup() { :; }
vdi_clone_run() { thinvdi-clone faults "$SRC" --name clone1; }
vdi_clone_observe() { origin_state clone1; }
vdi_clone_next() { next_create; }
vdi_clone_reads() { reads_agree; }
vdi_clone_cleanup() { destroy_named clone1 nx; }
fault_op vdi_clone

# Data destroy: the snapshot's thin device goes, its row stays (kind cbt_metadata).
vdi_data_destroy_setup() { destroy_named ddsnap; thinvdi-snapshot faults "$SRC" --name ddsnap; }
vdi_data_destroy_run() { local key; capture key key_of ddsnap; thinvdi-data-destroy faults "$key"; }
vdi_data_destroy_observe() {
    catalog_query "SELECT count(*), coalesce(sum(data_destroyed), 0) FROM volume WHERE name = 'ddsnap' AND state = 'ready'"
}
vdi_data_destroy_next() { next_create; }
vdi_data_destroy_reads() { reads_agree; }
vdi_data_destroy_cleanup() { destroy_named ddsnap nx; }
fault_op vdi_data_destroy

# Revert: rv holds content B; snapshot rva holds A, rvb holds B.
RV=$(thinvdi-create faults --name rv --size 4M)
P=$(thinvdi-attach faults "$RV"); write_pattern "$P" rv-a 4; thinvdi-detach faults "$RV"
RVA=$(thinvdi-snapshot faults "$RV" --name rva)
P=$(thinvdi-attach faults "$RV"); write_pattern "$P" rv-b 4; thinvdi-detach faults "$RV"
RVB=$(thinvdi-snapshot faults "$RV" --name rvb)
vdi_revert_setup() { :; }
vdi_revert_run() { thinvdi-revert faults "$RV" "$RVA"; }
vdi_revert_observe() { content_of rv; }
vdi_revert_next() { next_create; }
vdi_revert_reads() { reads_agree; }
vdi_revert_cleanup() { thinvdi-revert faults "$RV" "$RVB"; destroy_named nx; }
fault_op vdi_revert

# Compose (issue 31): the leaf cpl (1 MiB written) onto the parent cpp (4 MiB of other data); the
# cleanup reverts the leaf to its snapshot cpls, taken before.
CPL=$(thinvdi-create faults --name cpl --size 4M)
P=$(thinvdi-attach faults "$CPL"); write_pattern "$P" cp-leaf 1; thinvdi-detach faults "$CPL"
CPLS=$(thinvdi-snapshot faults "$CPL" --name cpls)
CPP=$(thinvdi-create faults --name cpp --size 4M)
P=$(thinvdi-attach faults "$CPP"); write_pattern "$P" cp-parent 4; thinvdi-detach faults "$CPP"
vdi_compose_setup() { :; }
vdi_compose_run() { thinvdi-compose faults "$CPL" "$CPP"; }
vdi_compose_observe() { content_of cpl; }
vdi_compose_next() { next_create; }
vdi_compose_reads() { reads_agree; }
vdi_compose_cleanup() { thinvdi-revert faults "$CPL" "$CPLS"; destroy_named nx; }
fault_op vdi_compose

vdi_resize_setup() { capture RZ thinvdi-create faults --name rz --size 8M; capture RZP thinvdi-attach faults "$RZ"; }
vdi_resize_run() { thinvdi-resize faults "$RZ" 16M; }
vdi_resize_observe() {
    local size bytes
    capture size catalog_query "SELECT virtual_size FROM volume WHERE key = '$RZ'"
    capture bytes blockdev --getsize64 "$RZP"
    echo "$size $bytes"
}
vdi_resize_next() { thinvdi-create faults --name nx --size 4M; }
vdi_resize_cleanup() { destroy_named rz nx; }
fault_op vdi_resize

ST=$(thinvdi-create faults --name st --size 4M)
vdi_set_setup() { thinvdi-set faults "$ST" --name st --description old; }
vdi_set_run() { thinvdi-set faults "$ST" --name st-renamed --description new; }
vdi_set_observe() { catalog_query "SELECT name, description FROM volume WHERE key = '$ST'"; }
vdi_set_next() { thinvdi-stat faults "$ST"; }
vdi_set_cleanup() { :; }
fault_op vdi_set

vdi_unset_setup() { thinvdi-set faults "$ST" k1=v1 k2=v2; }
vdi_unset_run() { thinvdi-unset faults "$ST" k1 k2; }
vdi_unset_observe() { catalog_query "SELECT count(*) FROM volume_key WHERE volume_uuid = (SELECT uuid FROM volume WHERE key = '$ST')"; }
vdi_unset_next() { thinvdi-stat faults "$ST"; }
vdi_unset_cleanup() { :; }
fault_op vdi_unset

# Extend by 8 MiB: the observation is how far the pool grew since the setup,
# and whether the data LV, the live table and thinsr-stat agree.
pool_bytes() { # the live pool table's length, in bytes (its second field, in sectors)
    local line fields
    capture line dmsetup table "thinsr_${FSR//-/}_pool"
    read -r -a fields <<<"$line"
    echo $(( ${fields[1]:-0} * 512 ))
}
extend_state() {
    local lv table stat agree=yes
    capture lv lvs --noheadings --units b --nosuffix -o lv_size "thinsr_${FSR//-/}/thinsr_${FSR//-/}_data"
    lv=${lv// /}
    capture table pool_bytes
    capture stat sr_field "$FSR" data_total
    [ "$lv" = "$table" ] && [ "$table" = "$stat" ] || agree="no(lv $lv table $table stat $stat)"
    echo "grown=$(( (table - EXTEND_BASE) >> 20 ))M agree=$agree"
}
sr_extend_setup() { capture EXTEND_BASE pool_bytes; }
sr_extend_run() { thinsr-extend faults --size +8M; }
sr_extend_observe() { extend_state; }
sr_extend_next() { thinvdi-ls faults; }
sr_extend_cleanup() { :; }
fault_op sr_extend

AT=$(thinvdi-create faults --name at --size 4M)
AT_DM=$(basename "$(readlink -f "$(thinvdi-attach faults "$AT")")"); thinvdi-detach faults "$AT"
attach_state() {
    local link=no-link device=no-device
    [ -e "/dev/thinsr/$FSR/$AT" ] && link=link
    dmsetup info "$AT_DM" >/dev/null 2>&1 && device=device
    echo "$link $device"
}
vdi_attach_setup() { thinvdi-detach faults "$AT"; }
vdi_attach_run() { thinvdi-attach faults "$AT"; }
vdi_attach_observe() { attach_state; }
vdi_attach_next() { thinvdi-attach faults "$AT"; }
vdi_attach_cleanup() { thinvdi-detach faults "$AT"; }
fault_op vdi_attach

vdi_detach_setup() { thinvdi-attach faults "$AT"; }
vdi_detach_run() { thinvdi-detach faults "$AT"; }
vdi_detach_observe() { attach_state; }
vdi_detach_next() { thinvdi-detach faults "$AT"; }
vdi_detach_cleanup() { :; }
fault_op vdi_detach

sr_set_setup() { thinsr-set "$FSR" --name faults --on-full queue; }
sr_set_run() { thinsr-set "$FSR" --name faults-renamed --on-full error; }
sr_set_observe() { # the name thinsr-ls lists, then thinsr-stat's name and on_full (one thinsr-stat for both)
    local listed stat
    capture listed sr_listed "$FSR" .name
    capture stat sr_fields "$FSR" '"\(.name) \(.on_full)"'
    echo "$listed $stat"
}
sr_listed() { thinsr-ls --json | jq -r --arg u "$1" ".[] | select(.uuid == \$u) | $2"; }   # sr_listed SR FILTER
sr_fields() { thinsr-stat --json "$1" | jq -r "$2"; }   # sr_fields SR FILTER
sr_set_next() { thinsr-set "$FSR" --name faults-renamed --on-full error; }
sr_set_cleanup() { thinsr-set "$FSR" --name faults --on-full queue; }
fault_op sr_set

# SR-level operations on a second SR whose one volume holds data.
SRU=$(cat /proc/sys/kernel/random/uuid)
SR_ARGS=(--uuid "$SRU" --name fsr --device "$FD2")
sr_state() {
    local listed pool=no
    capture listed sr_attached_list
    dmsetup info "thinsr_${SRU//-/}_pool" >/dev/null 2>&1 && pool=yes
    echo "$listed pool=$pool"
}
sr_attached_list() { thinsr-ls --json | jq -c --arg u "$SRU" '[.[] | select(.uuid == $u) | .attached]'; }
sr_create_setup() { :; }
sr_create_run() { thinsr-create "${SR_ARGS[@]}"; }
sr_create_observe() { sr_state; }
sr_create_next() { thinsr-create "${SR_ARGS[@]}"; }
sr_create_cleanup() { thinsr-detach --force "$SRU"; thinsr-destroy --force "$SRU"; }
sr_create_check() { echo "$SRU"; }
fault_op sr_create

thinsr-create "${SR_ARGS[@]}" >/dev/null
K=$(thinvdi-create "$SRU" --name data --size 8M); P=$(thinvdi-attach "$SRU" "$K")
write_pattern "$P" srdata 8; thinvdi-detach "$SRU" "$K"
sr_detach_setup() { thinsr-attach "$SRU"; }
sr_detach_run() { thinsr-detach "$SRU"; }
sr_detach_observe() { sr_state; }
sr_detach_next() { thinsr-detach "$SRU"; }
sr_detach_cleanup() { :; }
sr_detach_check() { echo "$SRU"; }
fault_op sr_detach

sr_attach_setup() { thinsr-detach "$SRU"; }
sr_attach_run() { thinsr-attach "$SRU"; }
sr_attach_observe() { sr_state; }
sr_attach_next() { thinsr-attach "$SRU"; }
sr_attach_cleanup() { :; }
sr_attach_check() { echo "$SRU"; }
fault_op sr_attach
P=$(thinvdi-attach "$SRU" "$K")
check "the SR's data survived every interrupted attach and detach" same_as_pattern "$P" srdata
thinvdi-detach "$SRU" "$K"

# thinsr-check --repair of damaged metadata, killed at each step (thin_repair,
# the generation that makes the copy the metadata, each rename and retag): the
# next --repair finishes it, and the data is intact.
new_loop FD3 256
RPU=$(thinsr-create --name frep --device "$FD3")
RPK=$(thinvdi-create frep --name data --size 8M); P=$(thinvdi-attach frep "$RPK")
write_pattern "$P" frep 8; thinvdi-detach frep "$RPK"; thinsr-detach frep
RPHEX=${RPU//-/}; RPVG=thinsr_$RPHEX
damage_metadata() {
    lvchange -ay "$RPVG/thinsr_${RPHEX}_meta"
    dd if=/dev/urandom of="/dev/$RPVG/thinsr_${RPHEX}_meta" bs=4096 seek=2 count=1 conv=notrunc oflag=direct status=none
    lvchange -an "$RPVG/thinsr_${RPHEX}_meta"
}
repair_state() { # names and role tags as LVM shows them, then thin_check and thin_dump of the LV named _meta
    # (The lines are matched by the shell, each as grep matched it: a meta LV
    # tagged meta, a spare tagged spare, no _swap anywhere.)
    local lines line meta=no spare=no swap=no names=odd check=damaged devices=0
    lvs --noheadings -o lv_name,lv_tags "$RPVG" >"$THINSR_SCRATCH/repair-lvs"
    mapfile -t lines <"$THINSR_SCRATCH/repair-lvs"
    for line in "${lines[@]}"; do
        [[ $line =~ thinsr_${RPHEX}_meta\ +.*thinsr.role=meta ]] && meta=yes
        [[ $line =~ thinsr_${RPHEX}_spare\ +.*thinsr.role=spare ]] && spare=yes
        [[ $line == *_swap* ]] && swap=yes
    done
    [ "$meta $spare $swap" = "yes yes no" ] && names=normal
    lvchange -ay "$RPVG/thinsr_${RPHEX}_meta" 2>/dev/null
    thin_check -q "/dev/$RPVG/thinsr_${RPHEX}_meta" 2>/dev/null && check=clean
    thin_dump "/dev/$RPVG/thinsr_${RPHEX}_meta" >"$THINSR_SCRATCH/repair-dump" 2>/dev/null
    mapfile -t lines <"$THINSR_SCRATCH/repair-dump"
    for line in "${lines[@]}"; do [[ $line == *"<device "* ]] && devices=$((devices + 1)); done
    echo "$names $check devices=$devices"
    lvchange -an "$RPVG/thinsr_${RPHEX}_meta" 2>/dev/null
}
sr_repair_setup() { damage_metadata; }
sr_repair_run() { # exit 6 (repaired) is this operation's success; a kill's 137 passes through
    thinsr-check --repair "$RPU"; local status=$?; [ "$status" = 6 ] && return 0; return "$status"
}
sr_repair_observe() { repair_state; }
sr_repair_next() { thinsr-check --repair "$RPU"; }
sr_repair_cleanup() { :; }
sr_repair_check() { echo "$RPU"; }
fault_op sr_repair
P=$(thinsr-attach "$RPU" >/dev/null && thinvdi-attach --read-only "$RPU" "$RPK")
check "the repaired SR's data survived every interrupted repair (cmp)" same_as_pattern "$P" frep
thinvdi-detach "$RPU" "$RPK"; thinsr-detach "$RPU"; thinsr-destroy --force "$RPU"

# thinsr-check --repair rebuilding a removed catalog LV from the catalog copy,
# killed at each step (lvcreate, mkfs, the new database, its rename): the next
# --repair finishes it, and every volume is as it was.
new_loop FD4 256
RBU=$(thinsr-create --name frebuild --device "$FD4")
RBK=$(thinvdi-create frebuild --name data --size 8M); P=$(thinvdi-attach frebuild "$RBK")
write_pattern "$P" frebuild 8; thinvdi-detach frebuild "$RBK"
thinvdi-snapshot frebuild "$RBK" --name "its snapshot" >/dev/null
thinvdi-set frebuild "$RBK" --description "kept by the copy" --key "k=1" --value "-v"
RBLS=$(thinvdi-ls --json frebuild)
thinsr-detach frebuild
RBVG=thinsr_${RBU//-/}; RBLV=$RBVG/${RBVG}_catalog
# The findings, and what a check or rebuild may not leave behind: mounts. (Not
# which LVs are active: LVM's udev autoactivation brings a detached SR's LVs
# up by itself after an lvremove, and the next attach or detach settles them.)
rebuild_state() { # (the mounts counted by the shell, as grep -c counted the lines naming the SR's run directory)
    local findings lines line mounts=0
    capture findings rebuild_findings
    mapfile -t lines </proc/self/mountinfo
    for line in "${lines[@]}"; do [[ $line == *" /run/thinsr/$RBU/"* ]] && mounts=$((mounts + 1)); done
    echo "$findings mounts=$mounts"
}
rebuild_findings() { thinsr-check --json "$RBU" | jq -r '[.findings[].problem] | join(",")'; }
sr_rebuild_setup() { lvremove -q -y "$RBLV" >/dev/null 2>&1; lvs >/dev/null; }
sr_rebuild_run() { thinsr-check --repair "$RBU"; local status=$?; [ "$status" = 6 ] && return 0; return "$status"; }
sr_rebuild_observe() { rebuild_state; }
sr_rebuild_next() { thinsr-check --repair "$RBU"; }
sr_rebuild_cleanup() { :; }
sr_rebuild_check() { echo "$RBU"; }
fault_op sr_rebuild
# Its database corrupted on a sound filesystem: the old file is set aside before the new one goes in.
sr_rebuild_db_setup() {
    mkdir -p /tmp/rbmnt; lvchange -ay "$RBLV"; mount "/dev/$RBLV" /tmp/rbmnt
    dd if=/dev/urandom of=/tmp/rbmnt/catalog.db bs=4096 seek=1 count=4 conv=notrunc status=none
    umount /tmp/rbmnt; lvchange -an "$RBLV"
}
sr_rebuild_db_run() { sr_rebuild_run; }
sr_rebuild_db_observe() { rebuild_state; }
sr_rebuild_db_next() { thinsr-check --repair "$RBU"; }
sr_rebuild_db_cleanup() { :; }
sr_rebuild_db_check() { echo "$RBU"; }
fault_op sr_rebuild_db
thinsr-attach "$RBU" >/dev/null
check_eq "every volume's record survived every interrupted rebuild" "$RBLS" "$(thinvdi-ls --json frebuild)"
P=$(thinvdi-attach --read-only "$RBU" "$RBK")
check "and its data (cmp)" same_as_pattern "$P" frebuild
thinvdi-detach "$RBU" "$RBK"; thinsr-detach "$RBU"; thinsr-destroy --force "$RBU"

sr_destroy_setup() { thinsr-create "${SR_ARGS[@]}"; thinsr-detach "$SRU"; }
sr_destroy_run() { thinsr-destroy "$SRU"; }
sr_destroy_observe() { sr_state; }
sr_destroy_next() { thinsr-destroy "$SRU"; }
sr_destroy_cleanup() { thinsr-destroy --force "$SRU"; }
sr_destroy_check() { echo ""; }
thinsr-detach "$SRU" && thinsr-destroy --force "$SRU" >/dev/null
fault_op sr_destroy

echo "fault points: $FAULT_TRIED tried, $FAULT_SURVIVED survived"
check_eq "every fault point survived" "$FAULT_TRIED" "$FAULT_SURVIVED"
check "bystander intact at the end" same_as_pattern "$BYP" bystander
thinvdi-detach faults "$BY"; thinvdi-detach faults "$SRC"
check "thinsr-check clean at the end" thinsr-check faults
final_metadata_check "$FSR"
