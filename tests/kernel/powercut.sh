# Power loss, not only kill -9 (issue 11). The SR's one PV is a dm device over
# a loop device. At a random moment during a storm of mutating operations its
# table becomes dm-flakey dropping every write: what a power cut does (nothing
# after it reaches the disk, and no writer is told). The storm is killed, the
# whole device stack is thrown away without flushing, and the PV is put back
# from what reached the loop device's file. Then the SR must attach, check
# clean, agree with its pool and keep every block a writer had flushed.
# Sourced by suite.sh.

test_begin "power cuts during a storm of mutating operations"
modprobe dm_flakey 2>/dev/null
new_loop PCL 768
PCSECT=$(blockdev --getsz "$PCL")
PCDISK=thinsr-powercut-disk
PCD=/dev/mapper/$PCDISK
# LVM must see the PV on the dm device only, not on the loop device under it.
PC_LVM=$THINSR_SCRATCH/lvm-powercut
PC_LAB_LVM=$LVM_SYSTEM_DIR
rm -rf "$PC_LVM"; cp -a "$LVM_SYSTEM_DIR" "$PC_LVM"
sed -i "0,/^devices {/s||devices {\n\tglobal_filter = [ \"r\|^$PCL\$\|\" ]|" "$PC_LVM/lvm.conf"
export LVM_SYSTEM_DIR=$PC_LVM
disk_up() { dmsetup create "$PCDISK" --table "0 $PCSECT linear $PCL 0"; }
disk_up
PSR=$(thinsr-create --name power --device "$PCD" --pool-size 384M)
PHEX=${PSR//-/}
PW=$(thinvdi-create power --name written --size 16M)
PR=$(thinvdi-create power --name reverted --size 8M)
P=$(thinvdi-attach power "$PR"); write_pattern "$P" power-r 8; thinvdi-detach power "$PR"
PRS=$(thinvdi-snapshot power "$PR" --name reverted-snap)
PZ=$(thinvdi-create power --name grown --size 4M)
PA=$(thinvdi-create power --name toggled --size 4M)
PC_LOG=$THINSR_SCRATCH/powercut-flushed

# The writer: block k of the written volume gets "round R block k", flushed
# (O_DIRECT and fsync), and only then is k logged as flushed.
pc_writer() {
    local k=0 path=$1
    while [ "$k" -lt 4096 ]; do
        yes "round $PC_ROUND block $k" | head -c 4096 \
            | dd of="$path" bs=4096 seek="$k" count=1 oflag=direct conv=fsync,notrunc status=none || return
        echo "$k" >> "$PC_LOG"
        k=$((k + 1))
    done
}
# One kind of operation per round, over and over, so every kind meets cuts.
PC_OPS=(create-destroy snapshot clone revert resize set attach-detach extend)
pc_storm() {
    local n=0 key
    while :; do
        n=$((n + 1))
        case $1 in
            create-destroy) key=$(thinvdi-create power --name storm --size 4M) && thinvdi-destroy power "$key" ;;
            snapshot) key=$(thinvdi-snapshot power "$PW" --name storm-snap) && thinvdi-destroy power "$key" ;;
            clone) key=$(thinvdi-clone power "$PRS" --name storm-clone) && thinvdi-destroy power "$key" ;;
            revert) thinvdi-revert power "$PR" "$PRS" ;;
            resize) thinvdi-resize power "$PZ" "$(( $(thinvdi-stat --json power "$PZ" | jq .virtual_size) + (1 << 20) ))" ;;
            set) thinvdi-set power "$PR" --description "description $n" "round=$PC_ROUND" ;;
            attach-detach) thinvdi-attach power "$PA" && thinvdi-detach power "$PA" ;;
            extend) thinsr-extend power --size +4M ;;
        esac
    done >/dev/null 2>&1
}
# The cut is one ioctl: the flakey table waits in the disk's inactive slot
# (loaded before the storm starts: a loaded table changes nothing until a
# resume), and the resume suspends the disk (--noflush), swaps the tables and
# resumes it, as suspend, load and resume did in three processes. It does not
# wait for udev's processing of the change (the storm still runs then, and it
# took seconds): udev is let settle once the storm is gone, before the
# devices above the disk are thrown away.
pc_arm() { dmsetup load "$PCDISK" --table "0 $PCSECT flakey $PCL 0 0 1 1 drop_writes"; }
pc_cut() { # every write from now on is dropped, and reported done
    dmsetup resume --noflush --noudevsync "$PCDISK"
}
pc_throw_away() { # the host loses power: processes, tmpfs state and every device above the disk go
    # (One dmsetup ls names them all, read by the shell; the volumes go in one
    # dmsetup remove, then the pool, then the SR's LVs in one, then the disk.
    # Removing the volumes and the pool makes and takes away no LV device.)
    local dev volumes=() lvs=()
    umount -l "/run/thinsr/$PSR/catalog" "/run/thinsr/$PSR/catalog-copy" 2>/dev/null
    dmsetup ls >"$THINSR_SCRATCH/powercut-devices"
    while read -r dev _; do
        case $dev in "thinsr_${PHEX}_v"*) volumes+=("$dev") ;; "thinsr_${PHEX}-"*) lvs+=("$dev") ;; esac
    done <"$THINSR_SCRATCH/powercut-devices"
    [ ${#volumes[@]} = 0 ] || dmsetup remove -f "${volumes[@]}"
    dmsetup remove -f "thinsr_${PHEX}_pool" 2>/dev/null
    [ ${#lvs[@]} = 0 ] || dmsetup remove -f "${lvs[@]}"
    dmsetup remove -f "$PCDISK"
    rm -rf "/run/thinsr/$PSR" "/dev/thinsr/$PSR"
}
# pc_verify_writes DEVICE: every block logged as flushed holds what was written.
# The writer logs blocks 0, 1, 2... in order, each once: those are the device's
# first blocks, so the shell writes what they must hold and one cmp compares
# them (a python3 per cut cost most of a second in the lab). A log in any other
# shape, or a difference, goes to python3 block by block, which says which
# blocks were lost.
pc_verify_writes() {
    local lines k=0 want
    mapfile -t lines <"$PC_LOG.at-cut"
    for want in "${lines[@]}"; do [ "$want" = "$k" ] || { k=-1; break; }; k=$((k + 1)); done
    if [ "$k" -ge 0 ]; then
        for ((k = 0; k < ${#lines[@]}; k++)); do
            want="round $PC_ROUND block $k"$'\n'
            while [ ${#want} -lt 4096 ]; do want+=$want; done
            printf '%s' "${want:0:4096}"
        done >"$THINSR_SCRATCH/powercut-expected"
        if cmp -s -n $((${#lines[@]} * 4096)) "$THINSR_SCRATCH/powercut-expected" "$1"; then
            echo "${#lines[@]} flushed blocks, 0 lost"
            return 0
        fi
    fi
    python3 - "$1" "$PC_LOG.at-cut" "$PC_ROUND" <<'PY'
import sys
path, log, round_ = sys.argv[1], sys.argv[2], sys.argv[3]
blocks = [int(line) for line in open(log) if line.strip()]
bad = []
with open(path, "rb") as disk:
    for k in blocks:
        disk.seek(k * 4096)
        want = (("round %s block %d\n" % (round_, k)) * 4096).encode()[:4096]
        if disk.read(4096) != want:
            bad.append(k)
print("%d flushed blocks, %d lost%s" % (len(blocks), len(bad), (": " + " ".join(map(str, bad[:10]))) if bad else ""))
sys.exit(1 if bad else 0)
PY
}

PC_TRIED=0 PC_SURVIVED=0
for PC_ROUND in $(seq 1 32); do
    op=${PC_OPS[$(( (PC_ROUND - 1) % ${#PC_OPS[@]} ))]}
    PWP=$(thinvdi-attach power "$PW")
    : > "$PC_LOG"
    pc_arm
    pc_writer "$PWP" & writer=$!
    pc_storm "$op" & storm=$!
    pc_wait=$((30 + RANDOM % 200)); printf -v pc_wait '%d.%02d' $((pc_wait / 100)) $((pc_wait % 100))
    sleep "$pc_wait"   # 0.30 to 2.29 s
    # What the writer has logged by now was flushed before the cut; what it
    # logs later was dropped (and reported done), so only this copy is checked.
    cp "$PC_LOG" "$PC_LOG.at-cut"
    pc_cut
    # Stopped first, so neither loop starts another process while its children are killed.
    kill -STOP "$storm" "$writer" 2>/dev/null
    pkill -9 -P "$storm,$writer" 2>/dev/null
    pkill -9 '^thin(vdi|sr)-' 2>/dev/null
    kill -9 "$storm" "$writer" 2>/dev/null
    wait "$storm" "$writer" 2>/dev/null
    udevadm settle
    pc_throw_away
    disk_up
    PC_TRIED=$((PC_TRIED + 1))
    problems=""
    thinsr-attach power >/tmp/pc.out 2>&1 || problems+=" attach: $(tail -n 1 /tmp/pc.out)"
    if [ -z "$problems" ]; then
        # thinsr-check runs thin_check and compares thin ids with the catalog; every
        # fourth cut the same is checked with the thin tools directly, as at the end.
        thinsr-check power >/tmp/pc.out 2>&1 || problems+=" check: $(grep -v '^SR ' /tmp/pc.out | head -n 2 | tr '\n' ' ')"
        if [ $((PC_ROUND % 4)) = 0 ]; then
            [ "$(thinvdi-ls --json power | jq length)" = "$(thin_count "$PSR")" ] || problems+=" catalog and pool disagree"
            dmsetup message "thinsr_${PHEX}_pool" 0 reserve_metadata_snap
            meta_path "$PSR" pc_meta
            thin_check -q -m "$pc_meta" || problems+=" thin_check failed"
            dmsetup message "thinsr_${PHEX}_pool" 0 release_metadata_snap
        fi
        PWP=$(thinvdi-attach --read-only power "$PW") && pc_verify_writes "$PWP" >/tmp/pc.verify || problems+=" $(cat /tmp/pc.verify)"
        thinvdi-detach power "$PW" >/dev/null 2>&1
    fi
    if [ -z "$problems" ]; then
        PC_SURVIVED=$((PC_SURVIVED + 1))
        read -r pc_verified </tmp/pc.verify
        pass "cut $PC_ROUND during $op: attach, check, pool and catalog agree, $pc_verified"
    else
        fail "cut $PC_ROUND during $op:$problems"
        break
    fi
done
echo "power cuts: $PC_TRIED tried, $PC_SURVIVED survived"
check_eq "every power cut survived" "$PC_TRIED" "$PC_SURVIVED"
check "at least 30 cuts" test "$PC_TRIED" -ge 30
P=$(thinvdi-attach --read-only power "$PRS")
check "a snapshot nothing wrote to is intact after all the cuts (cmp)" same_as_pattern "$P" power-r
thinvdi-detach power "$PRS"
final_metadata_check "$PSR"
dmsetup remove "$PCDISK"
export LVM_SYSTEM_DIR=$PC_LAB_LVM
