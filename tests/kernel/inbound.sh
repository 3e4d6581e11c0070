# thinsr as a storage-motion destination (issue 31), through the installed
# plugins as xapi calls them: Datapath.attach's Nbd server (writes through
# the URI xapi gets, with qemu-img, then a block-exact cmp), import_activate
# with a connection passed by SCM_RIGHTS (tests/kernel/fdpass.py stands in
# for xapi's handler), Volume.compose, and their refusals, each leaving no
# server, socket or device behind.

plugin_root=$THINSR_SCRATCH/root/usr/libexec/xapi-storage-script
make -s install-plugins DESTDIR="$THINSR_SCRATCH/root" >/dev/null
export THINSR_TOOLS_DIR=$THINSR_SCRATCH/bin THINSR_LOG_DIR=$THINSR_SCRATCH/log
IN=$THINSR_SCRATCH/inbound
mkdir -p "$IN"
# plug volume|datapath METHOD JSON: runs the installed plugin as xapi-storage-script does; its
# stdout is in $PLUG (JSON), its status returned.
plug() {
    local dir=$plugin_root/volume/org.xen.xapi.storage.thinsr
    [ "$1" = datapath ] && dir=$plugin_root/datapath/thinsr
    "$dir/$2" --json <<<"$3" >"$IN/plug.out" 2>"$IN/plug.err"
    local status=$?
    slurp PLUG "$IN/plug.out"
    return $status
}
# servers_left: NBD engines running and sockets or server records left, as one line.
servers_left() {
    local left=() pid comm file
    for pid in /proc/[0-9]*; do
        read -r comm <"$pid/comm" 2>/dev/null || continue
        case $comm in nbdkit|qemu-nbd) left+=("$comm");; esac
    done
    for file in /run/thinsr/nbd/* /run/thinsr/*/servers/*/*; do [ -e "$file" ] && left+=("$file"); done
    echo "${left[*]}"
}
pool_used() { dmsetup status "$(pool_name "$1")" | awk '{split($6, d, "/"); print d[1]}'; }

test_begin "inbound: Datapath.attach offers an NBD server of the device attached for the domain"
new_loop IL 640
ISR=$(thinsr-create --name inbound --device "$IL")
plug volume Volume.create "{\"dbg\":\"t\",\"sr\":\"$ISR\",\"name\":\"leaf\",\"description\":\"\",\"size\":67108864,\"sharable\":false}"
capture LEAF jq -r .key <<<"$PLUG"
LURI="thinsr://$ISR/$LEAF"
plug datapath Datapath.attach "{\"dbg\":\"t\",\"uri\":\"$LURI\",\"domain\":\"MIR1\"}"
capture NBD jq -r '.implementations[] | select(.[0] == "Nbd") | .[1].uri' <<<"$PLUG"
IFS=: read -r -a NBD_FIELDS <<<"$NBD"
check_eq "the Nbd uri is xapi's nbd:unix:<socket>:exportname=<name>, four fields" "4 nbd unix exportname" \
    "${#NBD_FIELDS[@]} ${NBD_FIELDS[0]} ${NBD_FIELDS[1]} ${NBD_FIELDS[3]%%=*}"
NBD_SOCKET=${NBD_FIELDS[2]}
check "its socket is under thinsr's run directory and listens" test -S "$NBD_SOCKET" -a "${NBD_SOCKET#/run/thinsr/nbd/}" != "$NBD_SOCKET"
check "Datapath.activate (read-write)" plug datapath Datapath.activate "{\"dbg\":\"t\",\"uri\":\"$LURI\",\"domain\":\"MIR1\"}"
plug datapath Datapath.attach "{\"dbg\":\"t\",\"uri\":\"$LURI\",\"domain\":\"MIR1\"}"
capture NBD2 jq -r '.implementations[] | select(.[0] == "Nbd") | .[1].uri' <<<"$PLUG"
check_eq "a second attach for the domain gives the same server (xapi's get_nbd_server)" "$NBD" "$NBD2"
head -c $((4 << 20)) /dev/urandom >"$IN/p1"
check "qemu-img writes 4 MiB through xapi's uri (NBD writes and flush)" \
    qemu-img convert -n -f raw -O raw "$IN/p1" "$NBD"
check "Datapath.deactivate" plug datapath Datapath.deactivate "{\"dbg\":\"t\",\"uri\":\"$LURI\",\"domain\":\"MIR1\"}"
check "Datapath.detach" plug datapath Datapath.detach "{\"dbg\":\"t\",\"uri\":\"$LURI\",\"domain\":\"MIR1\"}"
check_eq "the server is gone with its socket and record (no nbdkit or qemu-nbd runs)" "" "$(servers_left)"
D=$(thinvdi-attach inbound "$LEAF")
check "the volume holds the bytes written (cmp)" cmp -n $((4 << 20)) "$IN/p1" "$D"
thinvdi-detach inbound "$LEAF"
# qemu-nbd serves where nbdkit is missing (XCP-ng's may be): the same sequence through it.
THINSR_NBD_SERVER=qemu-nbd plug datapath Datapath.attach "{\"dbg\":\"t\",\"uri\":\"$LURI\",\"domain\":\"CP2\"}"
capture NBD jq -r '.implementations[] | select(.[0] == "Nbd") | .[1].uri' <<<"$PLUG"
plug datapath Datapath.activate "{\"dbg\":\"t\",\"uri\":\"$LURI\",\"domain\":\"CP2\"}"
check "through qemu-nbd: 1 MiB written at 8 MiB through the uri" \
    qemu-io -f raw -c "write -P 0x5a $((8 << 20)) 1M" "$NBD"
plug datapath Datapath.deactivate "{\"dbg\":\"t\",\"uri\":\"$LURI\",\"domain\":\"CP2\"}"
plug datapath Datapath.detach "{\"dbg\":\"t\",\"uri\":\"$LURI\",\"domain\":\"CP2\"}"
check_eq "and that server is gone too" "" "$(servers_left)"

test_begin "inbound: import_activate serves a connection passed by SCM_RIGHTS"
state_digest before
plug datapath Datapath.import_activate "{\"dbg\":\"t\",\"uri\":\"$LURI\",\"domain\":\"7\"}"
status=$?
state_digest after
capture REFUSAL jq -r '"\(.code) \(.params[0])"' <<<"$PLUG"
check_eq "import_activate of a volume not active for the domain: refused in xapi's shape, nothing changed" \
    "1 SR_BACKEND_FAILURE Volume_not_active unchanged" "$status $REFUSAL $([ "$before" = "$after" ] && echo unchanged || echo CHANGED)"
plug datapath Datapath.attach "{\"dbg\":\"t\",\"uri\":\"$LURI\",\"domain\":\"7\"}"
plug datapath Datapath.import_activate "{\"dbg\":\"t\",\"uri\":\"$LURI\",\"domain\":\"7\"}"
status=$?
capture REFUSAL jq -r '.params[0]' <<<"$PLUG"
check_eq "nor when only attached (not activated)" "1 Volume_not_active" "$status $REFUSAL"
check_eq "and the attach's own server is all that runs" "1" "$(ls /run/thinsr/nbd/ | grep -c '\.nbd$')"
plug datapath Datapath.activate "{\"dbg\":\"t\",\"uri\":\"$LURI\",\"domain\":\"7\"}"
check "import_activate of the active volume" plug datapath Datapath.import_activate "{\"dbg\":\"t\",\"uri\":\"$LURI\",\"domain\":\"7\"}"
capture IMPORT_SOCKET jq -r . <<<"$PLUG"
check "it returns a listening unix socket without ':'" test -S "$IMPORT_SOCKET" -a "${IMPORT_SOCKET//:/}" = "$IMPORT_SOCKET"
head -c $((2 << 20)) /dev/urandom >"$IN/p2"
python3 tests/kernel/fdpass.py "$IMPORT_SOCKET" "$IN/client.sock" "dp-7" &
FDPASS=$!
for _ in $(seq 100); do [ -S "$IN/client.sock" ] && break; sleep 0.05; done
check "qemu-img writes 2 MiB on the passed connection" \
    qemu-img convert -n -f raw -O raw "$IN/p2" "nbd+unix:///?socket=$IN/client.sock"
wait "$FDPASS"
plug datapath Datapath.deactivate "{\"dbg\":\"t\",\"uri\":\"$LURI\",\"domain\":\"7\"}"
plug datapath Datapath.detach "{\"dbg\":\"t\",\"uri\":\"$LURI\",\"domain\":\"7\"}"
check_eq "deactivate and detach end the receiver and the server (no process, socket or record left)" "" "$(servers_left)"
D=$(thinvdi-attach inbound "$LEAF")
head -c $((4 << 20)) "$D" >"$IN/leaf.now"
check "the first 2 MiB are what arrived through the passed connection" cmp -n $((2 << 20)) "$IN/p2" "$IN/leaf.now"
check "the next 2 MiB are still the first writes" cmp -i $((2 << 20)) -n $((2 << 20)) "$IN/p1" "$IN/leaf.now"
thinvdi-detach inbound "$LEAF"

test_begin "inbound: Volume.compose puts a parent's data under the leaf's own writes"
plug volume Volume.create "{\"dbg\":\"t\",\"sr\":\"$ISR\",\"name\":\"parent\",\"description\":\"\",\"size\":67108864,\"sharable\":false}"
capture PARENT jq -r .key <<<"$PLUG"
D=$(thinvdi-attach inbound "$PARENT")
head -c $((64 << 20)) /dev/urandom >"$IN/parent"
dd if="$IN/parent" of="$D" bs=1M count=6 oflag=direct conv=notrunc status=none
dd if="$IN/parent" of="$D" bs=1M skip=40 seek=40 count=2 oflag=direct conv=notrunc status=none
thinvdi-detach inbound "$PARENT"
# The parent as it reads (zeros where nothing was written), and the leaf's expected result.
: >"$IN/expected"; truncate -s 64M "$IN/expected"
dd if="$IN/parent" of="$IN/expected" bs=1M count=6 conv=notrunc status=none
dd if="$IN/parent" of="$IN/expected" bs=1M skip=40 seek=40 count=2 conv=notrunc status=none
cp "$IN/expected" "$IN/parent.reads"
dd if="$IN/leaf.now" of="$IN/expected" bs=1M count=4 conv=notrunc status=none
head -c $((1 << 20)) /dev/zero | tr '\000' '\132' >"$IN/5a"   # 0x5a, as qemu-io wrote it
dd if="$IN/5a" of="$IN/expected" bs=1M seek=8 count=1 conv=notrunc status=none
plug volume Volume.snapshot "{\"dbg\":\"t\",\"sr\":\"$ISR\",\"key\":\"$LEAF\"}"
capture DUMMY jq -r .key <<<"$PLUG"
# Refusals, each changing nothing.
thinvdi-attach --holder t inbound "$LEAF" >/dev/null
expect_failure 3 "compose of an attached leaf" thinvdi-compose inbound "$LEAF" "$PARENT"
thinvdi-detach --holder t inbound "$LEAF"
thinvdi-attach --read-only --holder t inbound "$PARENT" >/dev/null
expect_failure 3 "compose onto an attached parent" thinvdi-compose inbound "$LEAF" "$PARENT"
thinvdi-detach --holder t inbound "$PARENT"
expect_failure 64 "compose of a volume onto itself" thinvdi-compose inbound "$LEAF" "$LEAF"
expect_failure 64 "compose of a snapshot (as child)" thinvdi-compose inbound "$DUMMY" "$PARENT"
expect_failure 2 "compose onto an unknown volume" thinvdi-compose inbound "$LEAF" nosuch
new_loop IL2 320
OSR=$(thinsr-create --name inbound-other --device "$IL2")
OTHER=$(thinvdi-create inbound-other --name other --size 16M)
OTHER=$(thinvdi-stat --json inbound-other "$OTHER" | jq -r .uuid)
check "(a volume made in a second SR: $OTHER)" test "${#OTHER}" = 36
expect_failure 2 "compose onto a volume of another SR (unrelated)" thinvdi-compose inbound "$LEAF" "$OTHER"
BIG=$(thinvdi-create inbound --name big --size 128M)
expect_failure 64 "compose onto a parent larger than the child" thinvdi-compose inbound "$LEAF" "$BIG"
plug volume Volume.compose "{\"dbg\":\"t\",\"sr\":\"$ISR\",\"key\":\"$LEAF\",\"key2\":\"$LEAF\"}"
capture REFUSAL jq -r '"\(.code) \(.params[0])"' <<<"$PLUG"
check_eq "Volume.compose's refusal has xapi's shape" "SR_BACKEND_FAILURE Invalid_argument" "$REFUSAL"
USED=$(pool_used "$ISR")
LEAF_UUID=$(thinvdi-stat --json inbound "$LEAF" | jq -r .uuid)
check "Volume.compose(leaf, parent)" plug volume Volume.compose "{\"dbg\":\"t\",\"sr\":\"$ISR\",\"key\":\"$LEAF\",\"key2\":\"$PARENT\"}"
# The leaf maps 4 MiB at 0 and 1 MiB at 8 MiB: 80 blocks of 64 KiB cross; the parent's are shared.
check_eq "only the leaf's own blocks were copied (80 pool blocks; the old ones stay with the dummy snapshot)" \
    $((USED + 80)) "$(pool_used "$ISR")"
plug volume Volume.stat "{\"dbg\":\"t\",\"sr\":\"$ISR\",\"key\":\"$LEAF\"}"
check_eq "the leaf keeps its key and uuid" "$LEAF $LEAF_UUID" "$(jq -r '"\(.key) \(.uuid)"' <<<"$PLUG")"
D=$(thinvdi-attach --read-only --holder t inbound "$LEAF")
check "the leaf reads the parent with its own writes on top, block-exact (cmp of 64 MiB)" cmp "$IN/expected" "$D"
thinvdi-detach --holder t inbound "$LEAF"
D=$(thinvdi-attach --read-only --holder t inbound "$PARENT")
check "the parent is unchanged" cmp "$IN/parent.reads" "$D"
thinvdi-detach --holder t inbound "$PARENT"
check "Volume.destroy of the parent" plug volume Volume.destroy "{\"dbg\":\"t\",\"sr\":\"$ISR\",\"key\":\"$PARENT\"}"
check "Volume.destroy of the dummy snapshot" plug volume Volume.destroy "{\"dbg\":\"t\",\"sr\":\"$ISR\",\"key\":\"$DUMMY\"}"
check "Volume.unset of a key never set (_sm_config_base_mirror) succeeds" \
    plug volume Volume.unset "{\"dbg\":\"t\",\"sr\":\"$ISR\",\"key\":\"$LEAF\",\"k\":\"_sm_config_base_mirror\"}"
D=$(thinvdi-attach --read-only --holder t inbound "$LEAF")
check "the leaf still reads the same with the parent gone" cmp "$IN/expected" "$D"
thinvdi-detach --holder t inbound "$LEAF"
plug volume Volume.snapshot "{\"dbg\":\"t\",\"sr\":\"$ISR\",\"key\":\"$LEAF\"}"
capture SNAP jq -r .key <<<"$PLUG"
check "Volume.destroy of a volume that has a snapshot (copy_into_sr's leaf)" \
    plug volume Volume.destroy "{\"dbg\":\"t\",\"sr\":\"$ISR\",\"key\":\"$LEAF\"}"
D=$(thinvdi-attach --read-only --holder t inbound "$SNAP")
check "and its snapshot still reads the composed data" cmp "$IN/expected" "$D"
thinvdi-detach --holder t inbound "$SNAP"
check_eq "no compose or server device left (dm names _h, no nbdkit or qemu-nbd, no socket)" "" \
    "$(dmsetup ls | awk '$1 ~ /^thinsr_.*_h/ {print $1}')$(servers_left)"
check_pool_agrees "$ISR" "after compose"
final_metadata_check "$ISR"
thinsr-detach "$OSR" && thinsr-destroy --force "$OSR" >/dev/null
free_loop "$IL2"
free_loop "$IL"
unset THINSR_TOOLS_DIR THINSR_LOG_DIR
