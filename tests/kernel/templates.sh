# Templates by URI (thinvdi-introduce, -forget, -hydrate): thin clones over an
# external origin, hydration through dm-clone, and the bad input around them.
# Checked with dmsetup table/info/status, losetup, thin_ls, sha256sum of the
# images, cmp against the expected bytes.

# (Dashes dropped by the shell: each echo | tr was three more processes.)
tpl_uuid() { thinvdi-stat --json tpl "$1" | jq -r .uuid; }
tpl_dev() { local u; u=$(tpl_uuid "$1"); echo "thinsr_${TSR//-/}_v${u//-/}"; }          # KEY: its dm name
tpl_origin() { local u; u=$(tpl_uuid "$1"); echo "thinsr_${TSR//-/}_o${u//-/}"; }       # TEMPLATE KEY: its origin's dm name
tpl_majmin() { dmsetup info -c --noheadings -o major,minor "$1" | tr -d ' '; }
# nbd_served TEXT: how many qemu-nbd clients (qemu-nbd --connect) have TEXT in their command line,
# after up to 5 s for a disconnected one to exit.
nbd_served() {
    local count
    for _ in $(seq 50); do
        count=$(pgrep -fa qemu-nbd | grep -F -- "--connect=" | grep -cF -- "$1")
        [ "$count" = 0 ] && break; sleep 0.1
    done
    echo "$count"
}
tpl_origins() { dmsetup ls 2>/dev/null | grep -c "^thinsr_${TSR//-/}_o"; }
# make_pattern SEED MIB: the bytes write_pattern would write, as a file only.
make_pattern() {
    head -c $(($2 << 20)) < <(openssl enc -aes-128-ctr -nosalt -pass "pass:$1" -in /dev/zero 2>/dev/null) \
        > "$THINSR_SCRATCH/pattern-$1"
}

test_begin "thinvdi-introduce: raw and qcow2 images by file URI"
new_loop TD1 700
pvcreate -q "$TD1" >/dev/null && vgcreate -q tplvg "$TD1" >/dev/null
TSR=$(thinsr-create --name tpl --vg tplvg --pool-size 320M)
make_pattern tplbase 64
IMG=$THINSR_SCRATCH/images
mkdir -p "$IMG"
cp "$THINSR_SCRATCH/pattern-tplbase" "$IMG/base.raw"
qemu-img convert -f raw -O qcow2 "$IMG/base.raw" "$IMG/base.qcow2"
raw_sum=$(sha256sum < "$IMG/base.raw") qcow_sum=$(sha256sum < "$IMG/base.qcow2")
before=$(thin_count "$TSR")
TR=$(thinvdi-introduce tpl "file://$IMG/base.raw" --name base-raw --format raw)
check_eq "it prints the template's key" base-raw "$TR"
TQ=$(thinvdi-introduce tpl "file://$IMG/base.qcow2")
check_eq "without --name the key comes from the URI" base.qcow2 "$TQ"
check_eq "thinvdi-stat: a read-only template with its URI, the probed format and the image's size" \
    "template false file://$IMG/base.qcow2 qcow2 $((64 << 20))" \
    "$(thinvdi-stat --json tpl "$TQ" | jq -r '"\(.kind) \(.read_write) \(.template_uri) \(.template_format) \(.virtual_size)"')"
check_eq "each template holds one (empty) thin device in the pool" $((before + 2)) "$(thin_count "$TSR")"
check_eq "no device was made for either" 0 "$(tpl_origins)"
check_pool_agrees "$TSR" "with two templates"

test_begin "bad input: unknown schemes, unreachable URIs, non-images (one line, nothing changed)"
printf 'not a disk image\n' > "$IMG/notes.txt"
expect_failure 64 "an unknown scheme names the script directory" thinvdi-introduce tpl http://images.example/debian.qcow2
expect_failure 64 "a word that is not a URI" thinvdi-introduce tpl base.raw
expect_failure 1 "a file URI whose file does not exist (the script fails)" thinvdi-introduce tpl "file://$IMG/missing.qcow2"
expect_failure 64 "a file URI naming another host (the script refuses the URI)" thinvdi-introduce tpl "file://imagehost$IMG/base.raw"
expect_failure 64 "a text file given as qcow2" thinvdi-introduce tpl "file://$IMG/notes.txt" --format qcow2
expect_failure 64 "a qcow2 image given as vmdk" thinvdi-introduce tpl "file://$IMG/base.qcow2" --format vmdk
expect_failure 1 "an NBD URI nothing serves" thinvdi-introduce tpl "nbd+unix:///?socket=$THINSR_SCRATCH/none.sock"
expect_failure 7 "attaching a template (VDI_IS_TEMPLATE)" thinvdi-attach tpl "$TR"
expect_failure 7 "attaching a template read-only" thinvdi-attach --read-only tpl "$TR"
expect_failure 7 "resizing a template" thinvdi-resize tpl "$TR" 128M
expect_failure 7 "destroying a template (thinvdi-forget is its way out)" thinvdi-destroy tpl "$TR"
expect_failure 7 "setting a template's key" thinvdi-set tpl "$TR" a=b
expect_failure 7 "exporting a template" thinvdi-export tpl "$TR" "$THINSR_SCRATCH/t.raw"

test_begin "hostile images: references outside the image are refused before qemu opens it"
new_loop TSECRET 4
printf 'THINSR-SECRET-DEVICE' | dd of="$TSECRET" conv=notrunc status=none
printf '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 8192 FLAT "%s" 0\n' \
    "$TSECRET" > "$IMG/guest.raw"
truncate -s 4M "$IMG/guest.raw"
expect_failure 64 "a VMDK descriptor naming a host device (a guest wrote it on its disk)" thinvdi-introduce tpl "file://$IMG/guest.raw"
qemu-img create -q -f qcow2 -o data_file="$TSECRET",data_file_raw=on "$IMG/datafile.qcow2" 4M
expect_failure 64 "a qcow2 whose external data file is a host device" thinvdi-introduce tpl "file://$IMG/datafile.qcow2"
expect_failure 64 "also with --format qcow2" thinvdi-introduce tpl "file://$IMG/datafile.qcow2" --format qcow2
expect_failure 64 "a file URI decoding to a newline (the script refuses it)" thinvdi-introduce tpl "file://$IMG/base.raw%0A/etc/passwd"
free_loop "$TSECRET"

test_begin "clones over the image: reads come from the template, writes go to the pool"
C1=$(thinvdi-clone tpl "$TR" --name c1)
check_eq "the clone reads the template" "$(tpl_uuid "$TR")" "$(thinvdi-stat --json tpl c1 | jq -r .origin_template)"
expect_failure 7 "reverting a clone onto the template" thinvdi-revert tpl c1 "$TR"
expect_failure 64 "forgetting a volume that is not a template" thinvdi-forget tpl c1
P1=$(thinvdi-attach tpl c1)
check_eq "one origin device, linear and read-only" "1 r" \
    "$(tpl_origins) $(dmsetup info -c --noheadings -o attr "$(tpl_origin "$TR")" | cut -c4)"
check_eq "the clone's table is a thin device with the origin as external origin (dmsetup table)" \
    "$(tpl_majmin "$(tpl_origin "$TR")")" "$(dmsetup table "$(tpl_dev c1)" | awk '{print $6}')"
check "every byte reads as the image (cmp)" same_bytes $((64 << 20)) "$P1" "$IMG/base.raw"
check_eq "reading provisioned nothing (thin_ls of the clone)" 0 "$(thinvdi-stat --json tpl c1 | jq .physical_utilisation)"
make_pattern tplw1 1
dd if="$THINSR_SCRATCH/pattern-tplw1" of="$P1" bs=64k seek=128 oflag=direct conv=notrunc,fsync status=none
cp "$IMG/base.raw" "$THINSR_SCRATCH/expect-c1"
dd if="$THINSR_SCRATCH/pattern-tplw1" of="$THINSR_SCRATCH/expect-c1" bs=64k seek=128 conv=notrunc status=none
check "the write reads back beside the template's data (cmp)" same_bytes $((64 << 20)) "$P1" "$THINSR_SCRATCH/expect-c1"
check_eq "the image file is unchanged (sha256sum)" "$raw_sum" "$(sha256sum < "$IMG/base.raw")"
C2=$(thinvdi-clone tpl "$TQ" --name c2)
P2=$(thinvdi-attach tpl c2)
check "a qcow2 template's clone reads as the image (qemu-nbd under it; cmp)" same_bytes $((64 << 20)) "$P2" "$IMG/base.raw"
check_eq "two origins now, one per template" 2 "$(tpl_origins)"
C3=$(thinvdi-clone tpl "$TR" --name c3)
P3=$(thinvdi-attach tpl c3)
check_eq "a second clone shares the origin: the kernel counts 2 openers of it" 2 \
    "$(dmsetup info -c --noheadings -o open "$(tpl_origin "$TR")" | tr -d ' ')"
S1=$(thinvdi-snapshot tpl c1 --name c1-snap)
check_eq "a snapshot of the clone reads the same template" "$(tpl_uuid "$TR")" \
    "$(thinvdi-stat --json tpl c1-snap | jq -r .origin_template)"
PS=$(thinvdi-attach tpl c1-snap)
check "the snapshot reads the template and the clone's write (cmp)" same_bytes $((64 << 20)) "$PS" "$THINSR_SCRATCH/expect-c1"
check_eq "its table names the same origin" "$(tpl_majmin "$(tpl_origin "$TR")")" \
    "$(dmsetup table "$(tpl_dev c1-snap)" | awk '{print $6}')"
check_eq "thinvdi-tree: the templates are roots, the clone and its snapshot below" \
    "base-raw:c1,c3 c1:c1-snap" \
    "$(thinvdi-tree --json tpl | jq -r '[.[] | select(.key == "base-raw")][0] | "\(.key):\([.children[].key] | join(",")) \(.children[0].key):\([.children[0].children[].key] | join(","))"')"
thinvdi-detach tpl c3
check_eq "detaching one clone keeps the shared origin" 1 "$(dmsetup ls | grep -c "$(tpl_origin "$TR")")"
thinvdi-detach tpl c1-snap
thinvdi-detach tpl c1
check_eq "detaching the last user releases it" 0 "$(dmsetup ls | grep -c "$(tpl_origin "$TR")")"
check_eq "and its loop device (losetup)" 0 "$(losetup -j "$IMG/base.raw" | wc -l)"
expect_failure 3 "forgetting a template clones still read" thinvdi-forget tpl "$TR"

test_begin "resize past the image's end reads zeros; revert; the image is never written"
thinvdi-resize tpl c1 96M
P1=$(thinvdi-attach tpl c1)
check "past the image's end it reads zeros" same_bytes $((32 << 20)) <(dd if="$P1" bs=1M skip=64 status=none) /dev/zero
check "before it, the clone's data (cmp)" same_bytes $((64 << 20)) "$P1" "$THINSR_SCRATCH/expect-c1"
make_pattern tplw2 2
dd if="$THINSR_SCRATCH/pattern-tplw2" of="$P1" bs=1M seek=10 oflag=direct conv=notrunc,fsync status=none
thinvdi-detach tpl c1
check "revert the clone to its snapshot" thinvdi-revert tpl c1 c1-snap
P1=$(thinvdi-attach tpl c1)
check "it reads as the snapshot again (cmp)" same_bytes $((64 << 20)) "$P1" "$THINSR_SCRATCH/expect-c1"
thinvdi-detach tpl c1
check_eq "the images are unchanged (sha256sum)" "$raw_sum $qcow_sum" "$(sha256sum < "$IMG/base.raw") $(sha256sum < "$IMG/base.qcow2")"

test_begin "thinvdi-hydrate of an attached clone, in use: dm-clone copies the rest, the origin is dropped"
make_pattern tplw3 3
dd if="$THINSR_SCRATCH/pattern-tplw3" of="$P2" bs=1M seek=20 oflag=direct conv=notrunc,fsync status=none
cp "$IMG/base.raw" "$THINSR_SCRATCH/expect-c2"
dd if="$THINSR_SCRATCH/pattern-tplw3" of="$THINSR_SCRATCH/expect-c2" bs=1M seek=20 conv=notrunc status=none
# A guest keeps writing while it hydrates.
( for i in 1 2 3 4 5 6; do dd if="$THINSR_SCRATCH/pattern-tplw3" of="$P2" bs=1M seek=40 count=1 oflag=direct \
      conv=notrunc,fsync status=none; done ) &
writer=$!
thinvdi-snapshot tpl c2 --name c2-pre >/dev/null
check "thinvdi-hydrate --progress=json" bash -c "thinvdi-hydrate tpl c2 --progress=json 2> '$THINSR_SCRATCH/hyd.json'"
wait "$writer"
dd if="$THINSR_SCRATCH/pattern-tplw3" of="$THINSR_SCRATCH/expect-c2" bs=1M seek=40 count=1 conv=notrunc status=none
check_eq "the progress reached the whole volume" "hydrate $((64 << 20))" \
    "$(tail -n 1 "$THINSR_SCRATCH/hyd.json" | jq -r '"\(.operation) \(.done)"')"
check_eq "the catalog no longer ties it to the template" null "$(thinvdi-stat --json tpl c2 | jq -r .origin_template)"
check_eq "its table is a plain thin device now (no external origin)" 5 "$(dmsetup table "$(tpl_dev c2)" | wc -w)"
check "it reads what it read before, and the guest's writes (cmp)" same_bytes $((64 << 20)) "$P2" "$THINSR_SCRATCH/expect-c2"
check_eq "all of it is in the pool now (thin_ls)" $((64 << 20)) "$(thinvdi-stat --json tpl c2 | jq .physical_utilisation)"
check_eq "the qcow2 image's origin is released" 0 "$(dmsetup ls | grep -c "$(tpl_origin "$TQ")")"
check_eq "and no nbd device serves it any more (qemu-nbd gone)" 0 "$(nbd_served "$IMG/base.qcow2")"
check_eq "no hydration devices are left" 0 "$(dmsetup ls | grep -c "_h[cmds]")"
check_pool_agrees "$TSR" "after a hydration"
check "thinsr-check finds nothing wrong with templates, clones and a hydrated volume" thinsr-check tpl
check_eq "changed blocks from before the hydration count the whole volume (a block unmapped in both read the template then)" \
    $((64 << 20)) "$(thinvdi-changed --json tpl c2-pre c2 | jq .changed_bytes)"
# A guest discards a block after the hydration; a snapshot then reads zeros there, whatever reverts come between.
blkdiscard -o 0 -l 65536 "$P2"
thinvdi-snapshot tpl c2 --name c2-late >/dev/null
thinvdi-detach tpl c2
thinvdi-revert tpl c2 c2-pre
thinvdi-revert tpl c2 c2-late
P2=$(thinvdi-attach tpl c2)
check "reverting to a snapshot taken after the hydration drops the template again (its discarded block reads zeros)" \
    cmp -n 65536 "$P2" /dev/zero
thinvdi-destroy tpl c2-late
expect_failure 3 "forgetting the template while a snapshot from before the hydration reads it" thinvdi-forget tpl "$TQ"
thinvdi-destroy tpl c2-pre
check "and the template can be forgotten" thinvdi-forget tpl "$TQ"
check_eq "its thin device is gone with it" "$((before + 5))" "$(thin_count "$TSR")"
check_eq "the qcow2 image is unchanged (sha256sum)" "$qcow_sum" "$(sha256sum < "$IMG/base.qcow2")"
check "thinvdi-hydrate of a volume that reads no template does nothing" thinvdi-hydrate tpl c2
thinvdi-detach tpl c2

test_begin "thinvdi-hydrate stopped by SIGINT, killed, then resumed"
THINSR_FAULT_PAUSE=hydration-started:30000 thinvdi-hydrate tpl c3 --progress=none 2>"$THINSR_SCRATCH/hyd.err" &
hyd=$!
for _ in $(seq 100); do dmsetup ls | grep -q "_hc" && break; sleep 0.1; done
kill -INT "$hyd"; wait "$hyd"; status=$?
check_eq "SIGINT stops it with exit 130" 130 "$status"
check_eq "the volume still reads the template" "$(tpl_uuid "$TR")" "$(thinvdi-stat --json tpl c3 | jq -r .origin_template)"
check_eq "no hydration devices are left" 0 "$(dmsetup ls | grep -c "_h[cmds]")"
check_pool_agrees "$TSR" "after a stopped hydration"
THINSR_FAULT_PAUSE=hydration-started:30000 thinvdi-hydrate tpl c3 --progress=none 2>/dev/null &
hyd=$!
for _ in $(seq 100); do dmsetup ls | grep -q "_hc" && break; sleep 0.1; done
kill -KILL "$hyd"; wait "$hyd" 2>/dev/null
check "the next command on the SR recovers (thinvdi-attach)" bash -c "thinvdi-attach tpl c3 >/dev/null"
check_eq "recovery removed the killed hydration's devices" 0 "$(dmsetup ls | grep -c "_h[cmds]")"
check_pool_agrees "$TSR" "after a killed hydration"
P3=$(thinvdi-attach tpl c3)
check "a new run hydrates it" thinvdi-hydrate tpl c3 --progress=none
check "it reads as the template (cmp)" same_bytes $((64 << 20)) "$P3" "$IMG/base.raw"
check_eq "and no longer needs it" null "$(thinvdi-stat --json tpl c3 | jq -r .origin_template)"
thinvdi-detach tpl c3

test_begin "an NBD template whose server goes away: I/O errors, nothing damaged, a later attach recovers"
SOCK=$THINSR_SCRATCH/tpl.sock
qemu-nbd --read-only --format=raw --persistent --shared=8 --socket="$SOCK" "$IMG/base.raw" & server=$!
for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
TN=$(thinvdi-introduce tpl "nbd+unix:///?socket=$SOCK" --name over-nbd)
check_eq "an NBD template is raw" raw "$(thinvdi-stat --json tpl over-nbd | jq -r .template_format)"
C4=$(thinvdi-clone tpl over-nbd --name c4)
C5=$(thinvdi-clone tpl over-nbd --name c5)
P4=$(thinvdi-attach tpl c4)
check "its clone reads the export (cmp)" same_bytes $((64 << 20)) "$P4" "$IMG/base.raw"
check "the nbd device search locks thinsr's own run directory, not world-writable /run/lock" \
    test -e /run/thinsr/locks/nbd.lock -a ! -e /run/lock/thinsr-nbd.lock
kill "$server"; wait "$server" 2>/dev/null
check "with the server gone, reads of template data fail (dd: I/O error)" \
    bash -c "! dd if='$P4' of=/dev/null bs=64k skip=300 count=4 iflag=direct status=none"
check_pool_agrees "$TSR" "with an origin gone"
expect_failure 1 "attaching another clone while the export is gone fails, naming the URI" thinvdi-attach tpl c5
# Several clients at once, as most servers allow: the first connection's qemu client reconnects by itself.
qemu-nbd --read-only --format=raw --persistent --shared=8 --socket="$SOCK" "$IMG/base.raw" & server=$!
for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
check "attaching again brings the image up again under the attached clone" bash -c "thinvdi-attach tpl c4 >/dev/null"
check "and its reads work again (cmp)" same_bytes $((64 << 20)) "$P4" "$IMG/base.raw"
thinvdi-detach tpl c4
check_eq "the last detach releases the NBD connection" 0 "$(dmsetup ls | grep -c "$(tpl_origin over-nbd)")"
kill "$server"; wait "$server" 2>/dev/null
expect_failure 1 "attaching a clone whose export is gone: one line naming the URI, nothing half made" \
    thinvdi-attach tpl c4

test_begin "thinvdi-hydrate --on-read: what the guest reads is copied into the pool as it reads it"
SOCK=$THINSR_SCRATCH/cor.sock
qemu-nbd --read-only --format=raw --persistent --shared=8 --socket="$SOCK" "$IMG/base.raw" & server=$!
for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
TC=$(thinvdi-introduce tpl "nbd+unix:///?socket=$SOCK" --name cor-src)
C6=$(thinvdi-clone tpl cor-src --name c6)
P6=$(thinvdi-attach tpl c6)
thinvdi-hydrate tpl c6 --on-read --progress=none >"$THINSR_SCRATCH/cor.out" 2>"$THINSR_SCRATCH/cor.err" & cor=$!
HC=$(tpl_dev c6 | sed 's/_v\([0-9a-f]*\)$/_hc\1/')
HS=${HC/_hc/_hs}
# Reads count once its dm-stats regions are on dm-clone's source.
for _ in $(seq 100); do [ "$(dmsetup message "$HS" 0 @stats_list 2>/dev/null | grep -c +)" = 2 ] && break; sleep 0.1; done
check "its dm-clone device is there" dmsetup status "$HC"
check_eq "it counts the reads on dm-clone's source (dm-stats: a total and one area per region)" 2 \
    "$(dmsetup message "$HS" 0 @stats_list | grep -c "+")"
# dmsetup status: <start> <length> clone <meta block> <used/total> <region sectors> <hydrated/total> ...
hydrated() { dmsetup status "$HC" | awk '{split($7, r, "/"); print r[1]}'; }
region_bytes=$(( $(dmsetup status "$HC" | awk '{print $6}') * 512 ))
start=$(hydrated)
check_eq "dm-clone copies nothing by itself (no background hydration)" "$start" "$(sleep 1; hydrated)"
dd if="$P6" of="$THINSR_SCRATCH/cor-read" bs=1M skip=8 count=4 iflag=direct status=none
want=$((start + (4 << 20) / region_bytes))
for _ in $(seq 100); do [ "$(hydrated)" -ge "$want" ] && break; sleep 0.1; done
check "a 4 MiB read makes dm-clone copy its regions, and no more (status: $start -> $want regions)" \
    bash -c "[ \$(dmsetup status '$HC' | awk '{split(\$7, r, \"/\"); print r[1]}') -eq $want ]"
check "thinvdi-stat counts what was copied while it runs (physical_utilisation: 4 MiB)" \
    bash -c "[ \$(thinvdi-stat --json tpl c6 | jq .physical_utilisation) -eq $((4 << 20)) ]"
check "the read returned the template's bytes (cmp)" cmp -n $((4 << 20)) "$THINSR_SCRATCH/cor-read" \
    <(tail -c +$(((8 << 20) + 1)) "$IMG/base.raw")
check "the guest still writes through it (dd, then cmp)" bash -c \
    "dd if=/dev/urandom of='$THINSR_SCRATCH/cor-w' bs=64k count=2 status=none &&
     dd if='$THINSR_SCRATCH/cor-w' of='$P6' bs=64k seek=320 oflag=direct conv=notrunc status=none &&
     cmp -n $((128 << 10)) '$THINSR_SCRATCH/cor-w' <(dd if='$P6' bs=64k skip=320 count=2 iflag=direct status=none)"
kill -TERM "$cor"; wait "$cor"; status=$?
check_eq "SIGTERM ends it with exit 0" 0 "$status"
check "it says what it copied on read" grep -q "copied on read" "$THINSR_SCRATCH/cor.out"
check_eq "no hydration devices are left" 0 "$(dmsetup ls | grep -c "_h[cmds]")"
check_eq "the volume still reads the template for the rest" "$(tpl_uuid cor-src)" \
    "$(thinvdi-stat --json tpl c6 | jq -r .origin_template)"
check_pool_agrees "$TSR" "after copy-on-read"
expect_failure 64 "--threshold with --on-read is refused" thinvdi-hydrate tpl c6 --on-read --threshold 4
wait_copier() { for _ in $(seq 100); do [ "$(dmsetup message "$HS" 0 @stats_list 2>/dev/null | grep -c +)" = 2 ] && break; sleep 0.1; done; }
thinvdi-hydrate tpl c6 --on-read --progress=none >/dev/null 2>&1 & cor=$!
wait_copier
check "a resize of the volume while it copies on read goes through (the copy-on-read gives way)" \
    thinvdi-resize tpl c6 $((80 << 20))
wait "$cor"; status=$?
check_eq "and that ends it (exit 0), leaving no hydration devices" "0 0" "$status $(dmsetup ls | grep -c "_h[cmds]")"
check "what it copied is still the template's bytes (cmp)" cmp -n $((4 << 20)) "$THINSR_SCRATCH/cor-read" \
    <(dd if="$P6" bs=1M skip=8 count=4 iflag=direct status=none)
thinvdi-hydrate tpl c6 --on-read --progress=none >/dev/null 2>&1 & cor=$!
wait_copier
expect_failure 3 "a second copy-on-read of the same volume is refused" thinvdi-hydrate tpl c6 --on-read
# A snapshot killed with its origin suspended leaves the devices-changing marker; the detach of a
# hydrating volume changes devices too, and must finish that change first, not take the marker away.
P1=$(thinvdi-attach tpl c1)
C1DEV=$(tpl_dev c1)
THINSR_FAULT=origin-suspended thinvdi-snapshot tpl c1 --name c1-killed >/dev/null 2>&1
check_eq "a snapshot killed at origin-suspended leaves its origin suspended" Suspended \
    "$(dmsetup info -c --noheadings -o suspended "$C1DEV")"
thinvdi-detach tpl c6
check_eq "the detach of a hydrating volume resumes it first (recovery before any device change)" Active \
    "$(dmsetup info -c --noheadings -o suspended "$C1DEV")"
thinvdi-detach tpl c1
wait "$cor"; status=$?
check_eq "a detach ends it (exit 0) and leaves no hydration devices" "0 0" "$status $(dmsetup ls | grep -c "_h[cmds]")"
check_eq "and releases the template's NBD connection" 0 "$(dmsetup ls | grep -c "$(tpl_origin cor-src)")"
check_eq "and its qemu-nbd client (no nbd device serves it)" 0 "$(nbd_served "$SOCK")"
P6=$(thinvdi-attach tpl c6)
C6DEV=$(tpl_dev c6)   # (before the kill: tpl_dev runs thinvdi-stat, which would resume the guest)
THINSR_FAULT=copy-on-read-holding thinvdi-hydrate tpl c6 --on-read --progress=none >/dev/null 2>&1 & cor=$!
wait_copier
# A read of template data: the copier holds the guest to copy it, and dies there.
dd if="$P6" of=/dev/null bs=1M skip=16 count=1 iflag=direct status=none
wait "$cor"; status=$?
check_eq "a copier killed while it holds the guest (SIGKILL at copy-on-read-holding)" 137 "$status"
check_eq "leaves the guest's device suspended" Suspended "$(dmsetup info -c --noheadings -o suspended "$C6DEV")"
check "until the next command of any kind on the SR (thinvdi-ls)" thinvdi-ls tpl
check_eq "which resumed it" Active "$(dmsetup info -c --noheadings -o suspended "$C6DEV")"
check "the guest reads again (cmp)" cmp -n $((4 << 20)) "$THINSR_SCRATCH/cor-read" \
    <(timeout 30 dd if="$P6" bs=1M skip=8 count=4 iflag=direct status=none)
check_eq "and the killed copier's hydration devices are gone" 0 "$(dmsetup ls | grep -c "_h[cmds]")"
kill "$server"; wait "$server" 2>/dev/null
check "with the template gone, what was read is the pool's: it reads again (cmp)" \
    cmp -n $((4 << 20)) "$THINSR_SCRATCH/cor-read" <(dd if="$P6" bs=1M skip=8 count=4 iflag=direct status=none)
check "and what was never read fails (dd: I/O error)" \
    bash -c "! dd if='$P6' of=/dev/null bs=64k skip=600 count=4 iflag=direct status=none"
thinvdi-detach tpl c6
thinvdi-destroy tpl c6
thinvdi-forget tpl cor-src

final_metadata_check "$TSR"
free_loop "$TD1"
rm -rf "$IMG"
