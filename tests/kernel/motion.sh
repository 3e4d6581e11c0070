# Storage motion, source side: a volume mirrored by the kernel's mirror
# target to an NBD export (thinvdi-mirror, -stat, -stop, and the datapath
# plugin's Data.* calls), with a second SR in the same lab standing for the
# destination host, its volume served by thinvdi-serve --writable. Results
# are checked with cmp, dmsetup, losetup and the pools' own block counts.

# serve_writable SR VOLUME SOCKET: a writable NBD server of the volume, as the other host would run it.
serve_writable() {
    rm -f "$3"
    thinvdi-serve "$1" "$2" --socket "$3" --writable > /dev/null 2>&1 &
    SERVER=$!
    for _ in $(seq 100); do [ -S "$3" ] && return 0; sleep 0.1; done
    return 1
}
# stop_server: as a sysadmin would (SIGTERM), killed after 10 s so a stuck server cannot hang the suite.
stop_server() {
    kill -TERM "$SERVER" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null
}
# mirror_leftovers SR: what a mirror could leave behind (source devices, log loops, nbd clients and the
# qemu-nbd processes serving them, records running).
mirror_leftovers() {
    dmsetup ls | awk -v p="thinsr_${1//-/}_m" 'index($1, p) == 1 {print $1}'
    losetup -a | grep -F "/run/thinsr/$1/mirrors/" || true
    for pid in /sys/block/nbd*/pid; do [ -e "$pid" ] && echo "nbd client ${pid%/pid}"; done
    pgrep -a -f "qemu-nbd --connect" || true
    grep -l '"state":"\(running\|starting\)"' /run/thinsr/"$1"/mirrors/*.json 2>/dev/null || true
}
# serve_delayed SR VOLUME SOCKET MILLISECONDS: the volume served by nbdkit with each write held that long (a
# slow link), so a first copy lasts long enough to act during it; the volume stays attached for it.
serve_delayed() {
    rm -f "$3"
    local device; device=$(thinvdi-attach "$1" "$2") || return 1
    nbdkit -f --filter=delay -U "$3" file "$device" "delay-write=${4}ms" > /dev/null 2>&1 &
    SERVER=$!
    for _ in $(seq 100); do [ -S "$3" ] && return 0; sleep 0.1; done
    return 1
}
# poll_mirror OPERATION TRIES DONE [GIVE_UP]: polls thinvdi-mirror-stat every 0.1 s until the jq filter
# DONE holds (status 0) or GIVE_UP does, or TRIES run out (status 1); the progress seen goes to $MS.progress.
poll_mirror() {
    : > "$MS.progress"
    for _ in $(seq "$2"); do
        thinvdi-mirror-stat --json "$1" > "$MS.stat" || return 1
        jq -r .progress "$MS.stat" >> "$MS.progress"
        [ -n "${4:-}" ] && jq -e "$4" "$MS.stat" > /dev/null && return 1
        jq -e "$3" "$MS.stat" > /dev/null && return 0
        sleep 0.1
    done
    return 1
}
# wait_copying OPERATION: until the first copy is under way (0 < progress < 1, not failed).
wait_copying() { poll_mirror "$1" 100 '.progress > 0 and .progress < 1 and (.failed | not)'; }
# never_back FILE: the numbers in FILE, one a line, never decrease.
never_back() { sort -g -c "$1" 2>/dev/null || diff <(sort -g "$1") "$1"; }
# device_state DM_NAME: ACTIVE or SUSPENDED, as dmsetup info says.
device_state() { dmsetup info "$1" | awk '$1 == "State:" {print $2}'; }
# elapsed_ms START: milliseconds since START (an $EPOCHREALTIME), by the shell alone.
elapsed_ms() { local now=${EPOCHREALTIME/[.,]/} then=${1/[.,]/}; echo $(( (10#$now - 10#$then) / 1000 )); }
# wait_in_sync OPERATION: until complete (or failed).
wait_in_sync() { poll_mirror "$1" 600 '.complete' '.failed'; }
volume_uuid() { thinvdi-stat --json "$1" "$2" | jq -r .uuid; }
table_type() { dmsetup table "thinsr_${1//-/}_v$(volume_uuid "$1" "$2" | tr -d -)" | awk '{print $3}'; }   # SR_UUID VOLUME

test_begin "mirror: a detached volume copied whole to another SR's NBD server, only its data crossing"
new_loop MA 512
new_loop MB 512
MSA=$(thinsr-create --name motion-a --device "$MA" --pool-size 300M)
MSB=$(thinsr-create --name motion-b --device "$MB" --pool-size 300M)
MS=$THINSR_SCRATCH/motion
mkdir -p "$MS"
SV=$(thinvdi-create motion-a --name src --size 256M)
P=$(thinvdi-attach motion-a "$SV")
write_pattern "$P" ma 1
dd if=/dev/urandom of="$P" bs=1M seek=100 count=2 oflag=direct conv=notrunc status=none
thinvdi-detach motion-a "$SV"
DV=$(thinvdi-create motion-b --name copy --size 256M)
serve_writable motion-b "$DV" "$MS/copy.sock"
used_before=$(pool_status_field "$MSB" 3 | cut -d/ -f1)
check "thinvdi-mirror copies it (the volume attached for the run, the mirror ended and flushed)" \
    bash -c "thinvdi-mirror motion-a '$SV' 'nbd+unix:///$DV?socket=$MS/copy.sock' --json > '$MS/copy.json' && jq -e '.complete and .state == \"complete\" and .progress == 1' '$MS/copy.json'"
stop_server
SP=$(thinvdi-attach --read-only motion-a "$SV")
CP=$(thinvdi-attach --read-only motion-b "$DV")
check "cmp: the copy is the volume, byte for byte" cmp "$SP" "$CP"
block=$(sr_field "$MSB" block_size)
copied=$(( ($(pool_status_field "$MSB" 3 | cut -d/ -f1) - used_before) * block ))
check "only the 3 MiB of data crossed (the destination pool grew by $copied bytes, not 256 MiB)" \
    test "$copied" -ge $((3 << 20)) -a "$copied" -le $((4 << 20))
check_eq "nothing is left of the mirror: no source device, log loop, nbd client or running record" "" "$(mirror_leftovers "$MSA")"
check_eq "and the volume was detached again after the copy (only this test's read-only attach holds it)" "r" \
    "$(dmsetup info -c --noheadings -o attr "thinsr_${MSA//-/}_v$(volume_uuid motion-a "$SV" | tr -d -)" | cut -c4)"
thinvdi-detach motion-a "$SV"; thinvdi-detach motion-b "$DV"

test_begin "mirror: a live volume, written during the whole copy, ends identical at the domain's detach"
DV2=$(thinvdi-create motion-b --name live --size 256M)
serve_writable motion-b "$DV2" "$MS/live.sock"
P=$(thinvdi-attach --holder vm7 motion-a "$SV")
OP=$(thinvdi-mirror motion-a "$SV" "nbd+unix:///$DV2?socket=$MS/live.sock" --domain vm7 --background --json | jq -r .operation)
check_eq "--background returns the operation, <sr>/<volume>" "$MSA/$(volume_uuid motion-a "$SV")" "$OP"
check_eq "the volume's device is now a mirror" "mirror" "$(table_type "$MSA" "$SV")"
( for i in $(seq 40); do
      dd if=/dev/urandom of="$P" bs=64K seek=$(( (i * 797) % 4000 )) count=1 oflag=direct conv=notrunc status=none
  done ) &
writer=$!
check "it comes in sync while the guest writes (thinvdi-mirror-stat)" wait_in_sync "$OP"
wait $writer
check "progress never went back" bash -c "sort -g -c '$MS.progress' || diff <(sort -g '$MS.progress') '$MS.progress'"
dd if=/dev/urandom of="$P" bs=64K seek=500 count=8 oflag=direct conv=notrunc status=none
expect_failure 1 "a guest discard is refused while mirroring (the remote might not read zeros there)" blkdiscard -o 0 -l 65536 "$P"
check "writes after it is in sync reach both sides (the guest's I/O never failed)" \
    dd if=/dev/urandom of="$P" bs=4K seek=3 count=1 oflag=direct conv=notrunc status=none
expect_failure 3 "a second mirror of the same volume is refused" \
    thinvdi-mirror motion-a "$SV" "nbd+unix:///$DV2?socket=$MS/live.sock" --domain vm7 --background
expect_failure 3 "a resize while mirrored is refused" thinvdi-resize motion-a "$SV" 300M
check "a detach for another holder leaves the mirror running" \
    bash -c "thinvdi-detach --holder other motion-a '$SV' && [ \"\$(thinvdi-mirror-stat --json '$OP' | jq -r .state)\" = in-sync ]"
check "the detach for the domain ends it: flushed, complete" \
    bash -c "thinvdi-detach --holder vm7 motion-a '$SV' && thinvdi-mirror-stat --json '$OP' | jq -e '.complete and .state == \"complete\"'"
check_eq "and nothing is left of it" "" "$(mirror_leftovers "$MSA")"
stop_server
SP=$(thinvdi-attach --read-only --holder test motion-a "$SV")
CP=$(thinvdi-attach --read-only motion-b "$DV2")
check "cmp: the destination is the volume, byte for byte, with every write made during the mirror" cmp "$SP" "$CP"
thinvdi-detach --holder test motion-a "$SV"; thinvdi-detach motion-a "$SV"; thinvdi-detach motion-b "$DV2"

test_begin "mirror: through the datapath plugin, as xapi's send_start calls it (socket made late)"
plugin_root=$THINSR_SCRATCH/root/usr/libexec/xapi-storage-script
make -s install-plugins DESTDIR="$THINSR_SCRATCH/root" >/dev/null
export THINSR_TOOLS_DIR=$THINSR_SCRATCH/bin
dp() { echo "$2" | "$plugin_root/datapath/thinsr/$1" --json; }
URI="thinsr://$MSA/$SV"
DV3=$(thinvdi-create motion-b --name xapi --size 256M)
dp Datapath.attach "{\"dbg\":\"t\",\"uri\":\"$URI\",\"domain\":\"0\"}" > /dev/null
dp Datapath.activate "{\"dbg\":\"t\",\"uri\":\"$URI\",\"domain\":\"12\"}" > /dev/null
rm -f "$MS/proxy.sock"
( sleep 1; serve_writable motion-b "$DV3" "$MS/proxy.sock"; wait ) &
late=$!
dp Data.mirror "{\"dbg\":\"t\",\"uri\":\"$URI\",\"domain\":\"12\",\"remote\":\"nbd+unix:///$DV3?socket=$MS/proxy.sock\"}" > "$MS/mirror.out"
check "Data.mirror waits for the socket and returns [\"MirrorV1\", id]" jq -e '.[0] == "MirrorV1" and (.[1] | test("/"))' "$MS/mirror.out"
MOP=$(jq -c . "$MS/mirror.out")
check "Data.stat reaches complete" bash -c "for i in \$(seq 300); do echo '{\"dbg\":\"t\",\"operation\":$MOP}' | '$plugin_root/datapath/thinsr/Data.stat' --json > '$MS/stat.out' || exit 1; jq -e .complete '$MS/stat.out' >/dev/null && exit 0; sleep 0.1; done; exit 1"
check "with the shape xapi reads: {failed, complete, progress}" jq -e '(.failed == false) and (.progress == 1) and (keys == ["complete","failed","progress"])' "$MS/stat.out"
dp Data.ls '{"dbg":"t"}' > "$MS/ls.out"
check "Data.ls lists it" jq -e --argjson op "$MOP" 'index([$op]) != null' "$MS/ls.out"
dp Datapath.deactivate "{\"dbg\":\"t\",\"uri\":\"$URI\",\"domain\":\"12\"}" > /dev/null
check_eq "Datapath.deactivate of the domain ended it" "thin" "$(table_type "$MSA" "$SV")"
dp Datapath.detach "{\"dbg\":\"t\",\"uri\":\"$URI\",\"domain\":\"0\"}" > /dev/null
kill -TERM "$(pgrep -f "socket $MS/proxy.sock" | head -n 1)" 2>/dev/null; wait $late 2>/dev/null
dp Data.destroy "{\"dbg\":\"t\",\"operation\":$MOP}" > "$MS/destroy.out"
check "Data.destroy forgets it" bash -c "! thinvdi-mirror-stat '$(jq -r '.[1]' "$MS/mirror.out")' 2>/dev/null"
SP=$(thinvdi-attach --read-only motion-a "$SV")
CP=$(thinvdi-attach --read-only motion-b "$DV3")
check "cmp: the destination is the volume" cmp "$SP" "$CP"
thinvdi-detach motion-a "$SV"; thinvdi-detach motion-b "$DV3"
unset THINSR_TOOLS_DIR

test_begin "mirror: a remote that goes away fails the mirror, never the guest"
DV4=$(thinvdi-create motion-b --name cut --size 256M)
serve_writable motion-b "$DV4" "$MS/cut.sock"
P=$(thinvdi-attach --holder vm8 motion-a "$SV")
OP=$(thinvdi-mirror motion-a "$SV" "nbd+unix:///$DV4?socket=$MS/cut.sock" --domain vm8 --progress=none --json | jq -r .operation)
pkill -KILL -f "nbdkit.*$MS/cut.sock"   # the other host vanishes: its server dies with the connection open
stop_server
check "the guest's writes go on after the remote is gone" \
    dd if=/dev/urandom of="$P" bs=64K seek=50 count=4 oflag=direct conv=notrunc status=none
check "thinvdi-mirror-stat says failed" bash -c "for i in \$(seq 50); do thinvdi-mirror-stat --json '$OP' | jq -e .failed >/dev/null && exit 0; sleep 0.1; done; exit 1"
check "and the volume reads what the guest wrote" dd if="$P" of=/dev/null bs=64K skip=50 count=4 iflag=direct status=none
check "the domain's detach ends it as failed and takes it all down" \
    bash -c "thinvdi-detach --holder vm8 motion-a '$SV' && thinvdi-mirror-stat --json '$OP' | jq -e '.state == \"failed\"'"
check_eq "nothing left" "" "$(mirror_leftovers "$MSA")"

test_begin "mirror: bad input changes nothing"
P=$(thinvdi-attach --holder vm9 motion-a "$SV")
expect_failure 1 "a remote that never answers (its socket never appears)" \
    thinvdi-mirror motion-a "$SV" "nbd+unix:///x?socket=$MS/nobody.sock" --connect-timeout 1 --background
check_eq "and no mirror device, loop or nbd client was left" "" "$(mirror_leftovers "$MSA")"
SMALLV=$(thinvdi-create motion-b --name small --size 16M)
serve_writable motion-b "$SMALLV" "$MS/small.sock"
expect_failure 64 "a remote smaller than the volume" \
    thinvdi-mirror motion-a "$SV" "nbd+unix:///$SMALLV?socket=$MS/small.sock" --background
stop_server
check_eq "nothing left after it either" "" "$(mirror_leftovers "$MSA")"
expect_failure 64 "a URI with qemu option syntax in it" \
    thinvdi-mirror motion-a "$SV" "nbd+unix:///x?socket=/run/a,file.driver=file" --background
expect_failure 3 "a holder that does not hold the volume" \
    thinvdi-mirror motion-a "$SV" "nbd+unix:///x?socket=$MS/small.sock" --domain vm10 --background
SNAP=$(thinvdi-snapshot motion-a "$SV" --name snap)
expect_failure 64 "a snapshot (read-only)" thinvdi-mirror motion-a "$SNAP" "nbd+unix:///x?socket=$MS/small.sock"
expect_failure 64 "an unknown operation" thinvdi-mirror-stat "$MSA/00000000-0000-0000-0000-000000000000"
expect_failure 64 "an operation that is no operation" thinvdi-mirror-stop "nonsense"
thinvdi-detach --holder vm9 motion-a "$SV"

test_begin "mirror: a start killed at each step is undone by the next command"
DV5=$(thinvdi-create motion-b --name killed --size 256M)
for step in mirror-remote-connected mirror-switched; do
    serve_writable motion-b "$DV5" "$MS/killed.sock"
    thinvdi-attach --holder vm11 motion-a "$SV" > /dev/null
    THINSR_FAULT=$step thinvdi-mirror motion-a "$SV" "nbd+unix:///$DV5?socket=$MS/killed.sock" --domain vm11 --background >/dev/null 2>&1
    thinvdi-attach --holder vm12 motion-a "$SV" > /dev/null   # the next command: it recovers first
    check_eq "killed at $step: the next command put the volume's own table back" "thin" "$(table_type "$MSA" "$SV")"
    check_eq "killed at $step: nothing left" "" "$(mirror_leftovers "$MSA")"
    thinvdi-detach --holder vm11 motion-a "$SV"; thinvdi-detach --holder vm12 motion-a "$SV"
    stop_server
done

test_begin "mirror: a remote that stops answering fails the mirror within its timeout, never the guest"
DV6=$(thinvdi-create motion-b --name stalled --size 256M)
serve_writable motion-b "$DV6" "$MS/stalled.sock"
P=$(thinvdi-attach --holder vm13 motion-a "$SV")
OP=$(thinvdi-mirror motion-a "$SV" "nbd+unix:///$DV6?socket=$MS/stalled.sock" --domain vm13 --remote-timeout 3 \
     --progress=none --json | jq -r .operation)
NBD=$(jq -r .nbdDevice "/run/thinsr/$MSA/mirrors/${OP#*/}.json")
read -r io_timeout < "/sys/block/${NBD#/dev/}/queue/io_timeout"
check_eq "the remote's nbd device fails a request unanswered for 3 s (--remote-timeout; its queue's io_timeout)" \
    3000 "$io_timeout"
head -c 65536 /dev/urandom > "$MS/stalled.bin"
kill -STOP "$(pgrep -f "nbdkit.*$MS/stalled.sock")"   # the other host hangs: its server stops answering
started=$EPOCHREALTIME
dd if="$MS/stalled.bin" of="$P" bs=64K seek=70 count=1 oflag=direct conv=notrunc status=none &
writer=$!
timeout 20 tail --pid=$writer -s 0.1 -f /dev/null
took_ms=$(elapsed_ms "$started")
if kill -0 $writer 2>/dev/null; then   # still held: let the server go on so the suite can
    kill -CONT "$(pgrep -f "nbdkit.*$MS/stalled.sock")"
fi
wait $writer; write_status=$?
check "a guest write completes within the timeout and a margin (took ${took_ms} ms of at most 8000, status $write_status)" \
    test "$write_status" = 0 -a "$took_ms" -le 8000
check "and the volume holds it" cmp -n 65536 -i 0:$((70 * 65536)) "$MS/stalled.bin" "$P"
check "thinvdi-mirror-stat says failed" bash -c "thinvdi-mirror-stat --json '$OP' | jq -e .failed"
started=$EPOCHREALTIME
check "the domain's detach ends it as failed (the stalled qemu-nbd killed)" \
    bash -c "thinvdi-detach --holder vm13 motion-a '$SV' && thinvdi-mirror-stat --json '$OP' | jq -e '.state == \"failed\"'"
took_ms=$(elapsed_ms "$started")
check "within the timeout and a margin too (took ${took_ms} ms of at most 10000)" test "$took_ms" -le 10000
check_eq "nothing left: no source device, log loop, nbd client, qemu-nbd or running record" "" "$(mirror_leftovers "$MSA")"
kill -KILL "$(pgrep -f "nbdkit.*$MS/stalled.sock")" 2>/dev/null
stop_server

test_begin "mirror: the remote cut during the first copy fails the mirror, never the guest"
DV7=$(thinvdi-create motion-b --name cutearly --size 256M)
serve_delayed motion-b "$DV7" "$MS/cutearly.sock" 300
P=$(thinvdi-attach --holder vm14 motion-a "$SV")
OP=$(thinvdi-mirror motion-a "$SV" "nbd+unix:///$DV7?socket=$MS/cutearly.sock" --domain vm14 --background --json | jq -r .operation)
check "the first copy is under way (each remote write held 300 ms)" wait_copying "$OP"
kill -KILL "$SERVER"; wait "$SERVER" 2>/dev/null   # the other host vanishes mid-copy
read -r cut_at < <(tail -n 1 "$MS.progress")
thinvdi-detach motion-b "$DV7"
head -c 65536 /dev/urandom > "$MS/cutearly.bin"
check "the guest's writes go on (one to a region already copied)" \
    dd if="$MS/cutearly.bin" of="$P" bs=64K count=1 oflag=direct conv=notrunc status=none
check "and the volume holds it" cmp -n 65536 "$MS/cutearly.bin" "$P"
check "thinvdi-mirror-stat says failed" bash -c "for i in \$(seq 50); do thinvdi-mirror-stat --json '$OP' > '$MS.stat'; jq -r .progress '$MS.stat' >> '$MS.progress'; jq -e .failed '$MS.stat' >/dev/null && exit 0; sleep 0.1; done; exit 1"
check "the copy was cut before its end (at progress $cut_at)" awk -v p="$cut_at" 'BEGIN { exit !(p > 0 && p < 1) }'
check "progress never went back, the failure included ($(tr '\n' ' ' < "$MS.progress"))" never_back "$MS.progress"
check "the domain's detach ends it as failed" \
    bash -c "thinvdi-detach --holder vm14 motion-a '$SV' && thinvdi-mirror-stat --json '$OP' | jq -e '.state == \"failed\"'"
check_eq "nothing left" "" "$(mirror_leftovers "$MSA")"

test_begin "mirror: the VM deactivated mid-copy ends it as failed, the volume as it was"
DV8=$(thinvdi-create motion-b --name early --size 256M)
serve_delayed motion-b "$DV8" "$MS/early.sock" 300
thinvdi-attach --holder dom0 motion-a "$SV" > /dev/null   # as xapi's attach for dom0 keeps the device
P=$(thinvdi-attach --holder vm15 motion-a "$SV")
TOP="thinsr_${MSA//-/}_v$(volume_uuid motion-a "$SV" | tr -d -)"
table_before=$(dmsetup table "$TOP")
sum_before=$(sha256sum < "$P")
OP=$(thinvdi-mirror motion-a "$SV" "nbd+unix:///$DV8?socket=$MS/early.sock" --domain vm15 --background --json | jq -r .operation)
check "the first copy is under way" wait_copying "$OP"
check "the domain's detach (Datapath.deactivate) before the copy is whole ends it as failed" \
    bash -c "thinvdi-detach --holder vm15 motion-a '$SV' && thinvdi-mirror-stat --json '$OP' | jq -e '.state == \"failed\" and .failed and .progress < 1'"
check_eq "the volume's own table is back" "$table_before" "$(dmsetup table "$TOP")"
check_eq "the device runs (not suspended)" "ACTIVE" "$(device_state "$TOP")"
check_eq "the volume's bytes are what they were" "$sum_before" "$(sha256sum < "$P")"
check_eq "nothing left" "" "$(mirror_leftovers "$MSA")"
thinvdi-detach --holder dom0 motion-a "$SV"
stop_server; thinvdi-detach motion-b "$DV8"

test_begin "mirror: an end killed at each step is finished by the next command"
serve_writable motion-b "$DV5" "$MS/killed.sock"
for step in mirror-table-restored mirror-source-removed mirror-remote-disconnected; do
    P=$(thinvdi-attach --holder vm16 motion-a "$SV")
    TOP="thinsr_${MSA//-/}_v$(volume_uuid motion-a "$SV" | tr -d -)"
    table_before=$(dmsetup table "$TOP")
    thinvdi-mirror motion-a "$SV" "nbd+unix:///$DV5?socket=$MS/killed.sock" --domain vm16 --background > /dev/null
    THINSR_FAULT=$step thinvdi-detach --holder vm16 motion-a "$SV" > /dev/null 2>&1
    thinvdi-attach --holder vm17 motion-a "$SV" > /dev/null   # the next command: it recovers first
    check_eq "killed at $step: the volume runs on its own table" "$table_before ACTIVE" \
        "$(dmsetup table "$TOP") $(device_state "$TOP")"
    check_eq "killed at $step: nothing left" "" "$(mirror_leftovers "$MSA")"
    thinvdi-detach --holder vm16 motion-a "$SV"; thinvdi-detach --holder vm17 motion-a "$SV"
done
stop_server

test_begin "copy_into_sr: a snapshot copied to the other SR through the installed plugins, as xapi does it"
export THINSR_TOOLS_DIR=$THINSR_SCRATCH/bin
vp() { echo "$2" | "$plugin_root/volume/org.xen.xapi.storage.thinsr/$1" --json; }
SURI="thinsr://$MSA/$SNAP"
snap_size=$(thinvdi-stat --json motion-a "$SNAP" | jq -r .virtual_size)
LEAF=$(vp Volume.create "{\"dbg\":\"t\",\"sr\":\"$MSB\",\"name\":\"copy\",\"description\":\"\",\"size\":$snap_size,\"sharable\":false}" | jq -r .key)
LURI="thinsr://$MSB/$LEAF"
NBD_URI=$(dp Datapath.attach "{\"dbg\":\"t\",\"uri\":\"$LURI\",\"domain\":\"CP1\"}" | jq -r '.implementations[] | select(.[0] == "Nbd") | .[1].uri')
dp Datapath.activate "{\"dbg\":\"t\",\"uri\":\"$LURI\",\"domain\":\"CP1\"}" > /dev/null
SOURCE=$(dp Datapath.attach "{\"dbg\":\"t\",\"uri\":\"$SURI\",\"domain\":\"0\"}" | jq -r '.implementations[] | select(.[0] == "BlockDevice") | .[1].path')
dp Datapath.activate_readonly "{\"dbg\":\"t\",\"uri\":\"$SURI\",\"domain\":\"0\"}" > /dev/null
check "the snapshot's block device is copied to the leaf's Nbd uri (qemu-img standing for sparse_dd)" \
    qemu-img convert -n -f raw -O raw "$SOURCE" "$NBD_URI"
dp Datapath.deactivate "{\"dbg\":\"t\",\"uri\":\"$SURI\",\"domain\":\"0\"}" > /dev/null
dp Datapath.detach "{\"dbg\":\"t\",\"uri\":\"$SURI\",\"domain\":\"0\"}" > /dev/null
dp Datapath.deactivate "{\"dbg\":\"t\",\"uri\":\"$LURI\",\"domain\":\"CP1\"}" > /dev/null
dp Datapath.detach "{\"dbg\":\"t\",\"uri\":\"$LURI\",\"domain\":\"CP1\"}" > /dev/null
check "Volume.set content_id" vp Volume.set "{\"dbg\":\"t\",\"sr\":\"$MSB\",\"key\":\"$LEAF\",\"k\":\"content_id\",\"v\":\"c1\"}"
COPY=$(vp Volume.snapshot "{\"dbg\":\"t\",\"sr\":\"$MSB\",\"key\":\"$LEAF\"}" | jq -r .key)
check "Volume.destroy of the leaf, which has a snapshot" vp Volume.destroy "{\"dbg\":\"t\",\"sr\":\"$MSB\",\"key\":\"$LEAF\"}"
SP=$(thinvdi-attach --read-only motion-a "$SNAP")
CP=$(thinvdi-attach --read-only motion-b "$COPY")
check "cmp: the copy in the other SR is the snapshot, byte for byte" cmp "$SP" "$CP"
thinvdi-detach motion-a "$SNAP"; thinvdi-detach motion-b "$COPY"
check_eq "no NBD server or nbd client left" "" "$(pgrep -a 'nbdkit|qemu-nbd'; for pid in /sys/block/nbd*/pid; do [ -e "$pid" ] && echo "$pid"; done)"
unset THINSR_TOOLS_DIR

test_begin "mirror: the destination pool full fails the mirror (at the latest at its end), never the guest"
new_loop MC 256
MSC=$(thinsr-create --name motion-c --device "$MC" --pool-size 8M --on-full error)
DV9=$(thinvdi-create motion-c --name full --size 256M)
serve_writable motion-c "$DV9" "$MS/full.sock"
P=$(thinvdi-attach --holder vm18 motion-a "$SV")
dd if=/dev/urandom of="$P" bs=1M seek=120 count=16 oflag=direct conv=notrunc status=none   # more than the 8 MiB pool
OP=$(thinvdi-mirror motion-a "$SV" "nbd+unix:///$DV9?socket=$MS/full.sock" --domain vm18 --remote-timeout 5 \
     --background --json | jq -r .operation)
for _ in $(seq 50); do
    thinvdi-mirror-stat --json "$OP" > "$MS.stat"
    jq -e '.failed or .complete' "$MS.stat" > /dev/null && break
    sleep 0.2
done
echo "     (before the end, thinvdi-mirror-stat said: $(jq -c '{failed, complete, progress}' "$MS.stat"))"
head -c 65536 /dev/urandom > "$MS/full.bin"
check "the guest's writes go on" dd if="$MS/full.bin" of="$P" bs=64K seek=2 count=1 oflag=direct conv=notrunc status=none
check "and the volume holds them" cmp -n 65536 -i 0:$((2 * 65536)) "$MS/full.bin" "$P"
thinvdi-detach --holder vm18 motion-a "$SV"; detach_status=$?
thinvdi-mirror-stat --json "$OP" > "$MS.stat"
check "the domain's detach ends it as failed, the remote having failed (detach $detach_status: $(jq -c '{state, failed, failure}' "$MS.stat"))" \
    jq -e '.state == "failed" and .failed' "$MS.stat"
IFS=/ read -r pool_used pool_total < <(pool_status_field "$MSC" 3)
check "the destination's pool is full, $pool_used of $pool_total blocks (its server's writes reach it by the end's flush at the latest)" \
    test -n "$pool_total" -a "$pool_used" = "$pool_total"
check_eq "nothing left" "" "$(mirror_leftovers "$MSA")"
stop_server
thinsr-detach --force "$MSC" > /dev/null; thinsr-destroy --force "$MSC" > /dev/null
free_loop "$MC"

thinsr-destroy --force "$MSA" > /dev/null
thinsr-destroy --force "$MSB" > /dev/null
free_loop "$MA"; free_loop "$MB"
