# Export, import and NBD serving (thinvdi-export/-import/-serve), and several
# read-only holders of one snapshot, checked with qemu-img compare/map,
# nbdinfo, nbdcopy, cmp and the pool's own used-block count.

pool_used_blocks() { dmsetup status "$(pool_name "$1")" | awk '{split($6, d, "/"); print d[1]}'; }
# data_bytes IMAGE: the bytes qemu-img map says hold data.
data_bytes() { qemu-img map --output=json "$1" | jq '[.[] | select(.data and (.zero | not)) | .length] | add // 0'; }

test_begin "export: only provisioned data, identical images in every format"
new_loop XP1 1024
XSR=$(thinsr-create --name transfer --device "$XP1" --pool-size 850M)   # the imports below need most of it
XV=$(thinvdi-create transfer --name disk --size 256M)
P=$(thinvdi-attach transfer "$XV")
# 1 MiB of pattern at 0, 64 KiB at 100 MiB, 2 MiB at 200 MiB: 3.06 MiB of 256 MiB written.
write_pattern "$P" xa 1
dd if=/dev/urandom of="$P" bs=64K seek=1600 count=1 oflag=direct conv=notrunc status=none
dd if=/dev/urandom of="$P" bs=1M seek=200 count=2 oflag=direct conv=notrunc status=none
XS1=$(thinvdi-snapshot transfer "$XV" --name s1)
S1P=$(thinvdi-attach --read-only --holder test transfer "$XS1")
OUT=$THINSR_SCRATCH/exports
mkdir -p "$OUT"
for fmt in raw qcow2 vpc vmdk; do
    check "export $fmt" thinvdi-export transfer "$XS1" "$OUT/s1.$fmt" --format "$fmt" --progress=json
    check "qemu-img compare: the $fmt image is identical to the snapshot's device" \
        qemu-img compare -q -f "$fmt" "$OUT/s1.$fmt" "$S1P"
done
check_eq "the raw image is sparse: its data is what was written (qemu-img map)" "$(((3 << 20) + 65536))" "$(data_bytes "$OUT/s1.raw")"
check "the qcow2 image holds about that much (under 4 MiB on disk)" test "$(stat -c %s "$OUT/s1.qcow2")" -lt $((4 << 20))
check "--progress=json gave JSON lines ending at 100%" \
    bash -c "thinvdi-export transfer '$XS1' '$OUT/p.qcow2' --progress=json 2>&1 >/dev/null | tail -n 1 | jq -e '.percent == 100 and .total == $(((3 << 20) + 65536))'"
thinvdi-export transfer "$XS1" - > "$OUT/stdout.raw"
check "- writes the raw image to standard output" cmp "$OUT/stdout.raw" "$S1P"
check "the extension picks the format" bash -c "thinvdi-export transfer '$XS1' '$OUT/auto.vhd' && qemu-img info --output=json '$OUT/auto.vhd' | jq -e '.format == \"vpc\"'"
check_eq "the exports let their hold go (only the test's own holder is left)" "test" "$(ls /run/thinsr/$XSR/holders/*/ 2>/dev/null | xargs)"
check_eq "and left no scratch file" "" "$(ls /run/thinsr/$XSR/transfers/ 2>/dev/null | xargs)"
check "a detached volume exports too (attached read-only for the copy, detached after)" \
    bash -c "thinvdi-detach transfer '$XV' && thinvdi-export transfer '$XV' '$OUT/live.qcow2' && ! dmsetup info thinsr_${XSR//-/}_v$(thinvdi-stat --json transfer "$XV" | jq -r .uuid | tr -d -) >/dev/null 2>&1"
P=$(thinvdi-attach transfer "$XV")
expect_failure 3 "a volume attached read-write is refused (a guest may be writing it)" thinvdi-export transfer "$XV" "$OUT/x.qcow2"
check "and no partial file was left" test ! -e "$OUT/x.qcow2"
XD=$(thinvdi-snapshot transfer "$XV" --name gone)
thinvdi-data-destroy transfer "$XD"
expect_failure 64 "a snapshot whose data was destroyed cannot be exported" thinvdi-export transfer "$XD" "$OUT/gone.raw"
expect_failure 64 "or served" thinvdi-serve transfer "$XD" --socket "$THINSR_SCRATCH/gone.sock"
expect_failure 2 "an unknown volume" thinvdi-export transfer nosuch "$OUT/gone.raw"

test_begin "incremental export: a qcow2 backed by the base's export equals the later snapshot"
dd if=/dev/urandom of="$P" bs=64K seek=16 count=3 oflag=direct conv=notrunc status=none
blkdiscard -o $((200 << 20)) -l $((1 << 20)) "$P"
dd if=/dev/urandom of="$P" bs=1M seek=250 count=1 oflag=direct conv=notrunc status=none
XS2=$(thinvdi-snapshot transfer "$XV" --name s2)
S2P=$(thinvdi-attach --read-only --holder test transfer "$XS2")
thinvdi-export transfer "$XS1" "$OUT/s1.qcow2" --progress=none
check "export s2 --base s1 (the base image found from the last export of s1)" \
    thinvdi-export transfer "$XS2" "$OUT/s2.qcow2" --base "$XS1"
check_eq "its backing file is s1's export, by name (the pair moves together)" "s1.qcow2" \
    "$(qemu-img info --output=json "$OUT/s2.qcow2" | jq -r '."backing-filename"')"
check "qemu-img compare: the chain is identical to s2's device" qemu-img compare -q "$OUT/s2.qcow2" "$S2P"
check "the increment holds only the changed data (under 2 MiB: 192 KiB + 1 MiB and qcow2's tables; the discard as zeros)" \
    test "$(stat -c %s "$OUT/s2.qcow2")" -lt $((2 << 20))
check "vmdk too, with --base-image" bash -c "thinvdi-export transfer '$XS2' '$OUT/s2.vmdk' --base '$XS1' --base-image '$OUT/s1.vmdk' && qemu-img compare -q '$OUT/s2.vmdk' '$S2P'"
expect_failure 64 "--base with vpc is refused (qemu-img cannot write a differencing VHD)" \
    thinvdi-export transfer "$XS2" "$OUT/s2.vhd" --base "$XS1"
expect_failure 64 "--base of an unrelated volume is refused" \
    thinvdi-export transfer "$XS2" "$OUT/bad.qcow2" --base-image "$OUT/s1.qcow2" \
    --base "$(thinvdi-snapshot transfer "$(thinvdi-create transfer --name other --size 256M)" --name other-s)"
qemu-img create -q -f qcow2 "$OUT/tiny.qcow2" 1M
expect_failure 64 "--base with a base image of the wrong size is refused" \
    thinvdi-export transfer "$XS2" "$OUT/bad.qcow2" --base "$XS1" --base-image "$OUT/tiny.qcow2"
expect_failure 64 "--base with a base image that does not exist is refused" \
    thinvdi-export transfer "$XS2" "$OUT/bad.qcow2" --base "$XS1" --base-image "$OUT/missing.qcow2"
check "an existing FILE is replaced by a new export" bash -c "thinvdi-export transfer '$XS2' '$OUT/s2.qcow2' --base '$XS1' && qemu-img compare -q '$OUT/s2.qcow2' '$S2P'"
s1sum=$(sha256sum < "$OUT/s1.qcow2")
expect_failure 64 "an increment written over its own base image is refused (it would be backed by itself)" \
    thinvdi-export transfer "$XS2" "$OUT/s1.qcow2" --base "$XS1"
check_eq "and the base image is unchanged" "$s1sum" "$(sha256sum < "$OUT/s1.qcow2")"

test_begin "export is cancelled cleanly by SIGTERM"
BIG=$(thinvdi-create transfer --name big --size 600M)
BP=$(thinvdi-attach transfer "$BIG")
dd if=/dev/urandom of="$BP" bs=1M count=400 oflag=direct status=none
thinvdi-detach transfer "$BIG"
echo keep > "$OUT/big.qcow2"
thinvdi-export transfer "$BIG" "$OUT/big.qcow2" --progress=json 2>"$OUT/cancel.err" &
pid=$!
for _ in $(seq 200); do [ -s "$OUT/cancel.err" ] && break; sleep 0.05; done
kill -TERM $pid
wait $pid
check_eq "exit 130 (cancelled)" 130 "$?"
check_eq "one error line on stderr (besides progress)" 1 "$(grep -vc '^{' "$OUT/cancel.err")"
check_eq "FILE as it was" keep "$(cat "$OUT/big.qcow2")"
check "no temporary image left" bash -c "! ls -a '$OUT' | grep -q thinvdi-export"
check "the volume is detached again (no device, no holder)" bash -c "! thinvdi-stat --json transfer '$BIG' | jq -e '.attached // false' | grep -q true && ! ls /run/thinsr/$XSR/holders/$(thinvdi-stat --json transfer "$BIG" | jq -r .uuid) 2>/dev/null | grep -q ."
check "no nbdkit or qemu-img left running" bash -c "! pgrep -x nbdkit && ! pgrep -x qemu-img"

test_begin "import: any format, only allocated data provisioned"
IMG=$THINSR_SCRATCH/images
mkdir -p "$IMG"
# A 1 GiB image with 10 MiB of data (1%), plus an explicit run of zeros in the data.
truncate -s 1G "$IMG/src.raw"
head -c $((8 << 20)) < <(openssl enc -aes-128-ctr -nosalt -pass pass:imp -in /dev/zero 2>/dev/null) | dd of="$IMG/src.raw" bs=1M seek=3 conv=notrunc status=none
dd if=/dev/zero of="$IMG/src.raw" bs=1M seek=500 count=4 conv=notrunc status=none
dd if=/dev/urandom of="$IMG/src.raw" bs=1M seek=900 count=2 conv=notrunc status=none
for fmt in qcow2 vpc vmdk vhdx; do
    qemu-img convert -f raw -O "$fmt" $([ "$fmt" = vpc ] && echo -o force_size=on) "$IMG/src.raw" "$IMG/src.$fmt"
done
for fmt in raw qcow2 vpc vmdk vhdx; do
    before=$(pool_used_blocks "$XSR")
    IV=$(thinvdi-import transfer --name "imp-$fmt" "$IMG/src.$fmt")
    check "import $fmt (probed)" test -n "$IV"
    IP=$(thinvdi-attach --read-only transfer "$IV")
    check "qemu-img compare: the volume equals the $fmt image" qemu-img compare -q "$IMG/src.$fmt" "$IP"
    check_eq "its size is the image's" "$((1 << 30))" "$(blockdev --getsize64 "$IP")"
    used=$(( ($(pool_used_blocks "$XSR") - before) * 65536 ))
    check "it provisioned about the image's data (10 MiB, here $used bytes; zero runs stay holes)" \
        test "$used" -ge $((10 << 20)) -a "$used" -le $((11 << 20))
    thinvdi-detach transfer "$IV"
done
check_eq "--json prints the volume" "imp-json 1073741824" \
    "$(thinvdi-import transfer --name imp-json --json "$IMG/src.qcow2" | jq -r '"\(.name) \(.virtual_size)"')"
head -c $((5 << 20)) "$IMG/src.raw" > "$IMG/stream.raw"
SV=$(thinvdi-import transfer --name stream --size 5M - < "$IMG/stream.raw")
SP=$(thinvdi-attach --read-only transfer "$SV")
check "- reads a raw stream of exactly --size (cmp)" cmp "$IMG/stream.raw" "$SP"
before=$(thinvdi-ls --json transfer | jq length) used=$(pool_used_blocks "$XSR")
( head -c 4M /dev/urandom; exit 1 ) | thinvdi-import transfer --name short --size 64M --format raw - 2>"$IMG/short.err"
check_eq "a stream that ends before --size (its producer died) fails: exit 64, one line" "64 1" "$? $(wc -l < "$IMG/short.err")"
check_eq "and leaves no volume and no space used" "$before $used" "$(thinvdi-ls --json transfer | jq length) $(pool_used_blocks "$XSR")"
check "saying how many bytes arrived" grep -q "after 4194304 of the 67108864 bytes" "$IMG/short.err"
thinvdi-detach transfer "$SV"

test_begin "import: bad input leaves nothing behind"
printf 'this is not a disk image\n' > "$IMG/text.txt"
expect_failure 64 "a file that is not an image" thinvdi-import transfer --name bad "$IMG/text.txt"
head -c 300000 "$IMG/src.qcow2" > "$IMG/truncated.qcow2"
before=$(thinvdi-ls --json transfer | jq length)
thinvdi-import transfer --name trunc "$IMG/truncated.qcow2" 2>"$IMG/trunc.err"
check_eq "a truncated qcow2 is refused (exit 64)" 64 "$?"
check_eq "with one line" 1 "$(wc -l < "$IMG/trunc.err")"
check_eq "and no volume is left" "$before" "$(thinvdi-ls --json transfer | jq length)"
expect_failure 64 "a missing file" thinvdi-import transfer --name bad "$IMG/nope.qcow2"
expect_failure 64 "- without --size" thinvdi-import transfer --name bad -
expect_failure 64 "- with --format qcow2" thinvdi-import transfer --name bad --size 8M --format qcow2 -
check "a stream longer than --size is refused and removed" bash -c "! thinvdi-import transfer --name long --size 1M - < '$IMG/stream.raw' && ! thinvdi-stat transfer long 2>/dev/null"
new_loop XP2 200
SMALL=$(thinsr-create --name small --device "$XP2")
truncate -s 1G "$IMG/full.raw"; dd if=/dev/urandom of="$IMG/full.raw" bs=1M count=100 conv=notrunc status=none
expect_failure 4 "an image with more data than the pool has free: No_space before anything is written" \
    thinvdi-import small --name toobig "$IMG/full.raw"

test_begin "an import killed outright is removed by the next operation"
thinvdi-import transfer --name killed --progress=none "$IMG/full.raw" &
pid=$!
for _ in $(seq 100); do thinvdi-stat transfer killed >/dev/null 2>&1 && break; sleep 0.1; done
sleep 0.5
kill -KILL $pid; wait $pid 2>/dev/null
pkill -KILL -x qemu-img
for _ in $(seq 100); do pgrep -x qemu-img >/dev/null || break; sleep 0.1; done
check "the half volume was there" test -n "$(sqlite3 "file:/run/thinsr/$XSR/catalog/catalog.db?mode=ro" "SELECT key FROM volume WHERE import_owner IS NOT NULL")"
check "the next writer removes it" bash -c "thinvdi-create transfer --name after-kill --size 1M >/dev/null && ! thinvdi-stat transfer killed 2>/dev/null"
check "thinsr-check is clean" thinsr-check transfer

test_begin "import is cancelled cleanly by SIGINT"
before=$(thinvdi-ls --json transfer | jq length)
used=$(pool_used_blocks "$XSR")
thinvdi-import transfer --name cancelled --progress=json "$IMG/full.raw" 2>"$IMG/cancel.err" &
pid=$!
for _ in $(seq 200); do [ -s "$IMG/cancel.err" ] && break; sleep 0.05; done
kill -INT $pid
wait $pid
check_eq "exit 130" 130 "$?"
check_eq "no volume left" "$before" "$(thinvdi-ls --json transfer | jq length)"
check_eq "and no space kept" "$used" "$(pool_used_blocks "$XSR")"
(sleep 20 | thinvdi-import transfer --name stalled --size 8M --progress=none - 2>"$IMG/stall.err") &
stall=$!
sleep 2
pkill -INT -f "thinvdi-import transfer --name stalled"
# Once the import has gone, the stalled producer is stopped too (else the
# pipeline, and this wait, last its whole 20 s); the pipeline's status is the import's.
for _ in $(seq 100); do pgrep -f "thinvdi-import transfer --name stalled" >/dev/null || break; sleep 0.1; done
pkill -P "$stall" -x sleep
wait "$stall"
check_eq "a standard-input import waiting on a stalled producer cancels too (exit 130)" 130 "$?"
check "and leaves no volume" bash -c "! thinvdi-stat transfer stalled 2>/dev/null"
expect_failure 64 "an image naming a backing file is refused (a raw disk's guest may have written that header)" \
    thinvdi-import transfer --name chain "$OUT/s2.qcow2"
expect_failure 64 "also with --format qcow2 while the chain is not named" \
    thinvdi-import transfer --name chain --format qcow2 "$OUT/s2.qcow2"
CH=$(thinvdi-import transfer --name chain --backing "$OUT/s1.qcow2" "$OUT/s2.qcow2")
CHP=$(thinvdi-attach --read-only transfer "$CH")
check "with --backing naming its base the chain imports flattened, equal to s2" qemu-img compare -q "$OUT/s2.qcow2" "$CHP"
thinvdi-detach transfer "$CH"

test_begin "import: hostile images read nothing outside themselves (CVE-2024-32498's attacks)"
new_loop XSECRET 4
printf 'THINSR-SECRET-DEVICE' | dd of="$XSECRET" conv=notrunc status=none
printf '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 8192 FLAT "%s" 0\n' \
    "$XSECRET" > "$IMG/guest.raw"
truncate -s 4M "$IMG/guest.raw"
expect_failure 64 "a raw disk whose guest wrote a VMDK descriptor naming a host device, without --format" \
    thinvdi-import transfer --name evil "$IMG/guest.raw"
GV=$(thinvdi-import transfer --name guest --format raw "$IMG/guest.raw")
GP=$(thinvdi-attach --read-only transfer "$GV")
check "with --format raw its own bytes are imported, not the device's (cmp)" cmp "$IMG/guest.raw" "$GP"
thinvdi-detach transfer "$GV"
qemu-img create -q -f qcow2 -o data_file="$XSECRET",data_file_raw=on "$IMG/datafile.qcow2" 4M
expect_failure 64 "a qcow2 whose external data file is a host device" thinvdi-import transfer --name evil "$IMG/datafile.qcow2"
expect_failure 64 "also with --format qcow2" thinvdi-import transfer --name evil --format qcow2 "$IMG/datafile.qcow2"
qemu-img create -q -f qcow2 -b "$XSECRET" -F raw "$IMG/mid.qcow2" 4M
qemu-img create -q -f qcow2 -b "$IMG/mid.qcow2" -F qcow2 "$IMG/top.qcow2" 4M
expect_failure 64 "a chain two levels deep ending at a device, with --format qcow2" \
    thinvdi-import transfer --name evil --format qcow2 "$IMG/top.qcow2"
expect_failure 64 "also with its first level named" thinvdi-import transfer --name evil --backing "$IMG/mid.qcow2" "$IMG/top.qcow2"
expect_failure 64 "and with the device named as a backing image" \
    thinvdi-import transfer --name evil --backing "$IMG/mid.qcow2" --backing "$XSECRET" "$IMG/top.qcow2"
check "no volume holds the device's bytes" bash -c "! thinvdi-stat transfer evil 2>/dev/null"
free_loop "$XSECRET"

test_begin "NBD: block status from the pool's metadata, several readers, writable"
SOCK=$THINSR_SCRATCH/s1.sock
thinvdi-serve transfer "$XS1" --socket "$SOCK" > "$OUT/serve.out" &
serve=$!
for _ in $(seq 100); do [ -S "$SOCK" ] && [ -s "$OUT/serve.out" ] && break; sleep 0.1; done
URI=$(head -n 1 "$OUT/serve.out")
thinvdi-detach --holder test transfer "$XS1"   # the server's own hold keeps the device
check_eq "it prints the URI" "nbd+unix:///$XS1?socket=$SOCK" "$URI"
nbdinfo --map "$URI" > "$OUT/map"
check_eq "nbdinfo --map: data exactly where the pool provisioned (3 runs, 3 MiB + 64 KiB)" "3 $(((3 << 20) + 65536))" \
    "$(awk '$3 == 0 {n++; s += $2} END {print n, s}' "$OUT/map")"
check "and holes+zero elsewhere" grep -q 'hole,zero' "$OUT/map"
nbdcopy "$URI" "$OUT/nbd.raw"
check "nbdcopy of the export equals the snapshot" cmp "$OUT/nbd.raw" "$S1P"
check_eq "and copied only data (sparse: qemu-img map of the copy)" "$(((3 << 20) + 65536))" "$(data_bytes "$OUT/nbd.raw")"
check "the export is read-only" bash -c "nbdinfo --json '$URI' | jq -e '.exports[0].is_read_only == true'"
expect_failure 64 "a socket path that exists is refused" thinvdi-serve transfer "$XS1" --socket "$SOCK"
expect_failure 3 "the snapshot cannot be destroyed while served" thinvdi-destroy transfer "$XS1"
kill -TERM $serve; wait $serve
check_eq "SIGTERM stops it with exit 0" 0 "$?"
check "the socket is gone" test ! -e "$SOCK"
# TLS: the URI thinvdi-serve prints is one thinsr's own nbd scheme opens, with the host's client key.
mkdir -p "$THINSR_SCRATCH/tls" && chmod 700 "$THINSR_SCRATCH/tls"
printf 'qemu:%s\n' "$(openssl rand -hex 32)" > "$THINSR_SCRATCH/tls/keys.psk"
thinvdi-serve transfer "$XS1" --socket "$SOCK" --tls-psk "$THINSR_SCRATCH/tls/keys.psk" > "$OUT/serve.out" &
serve=$!
for _ in $(seq 100); do [ -S "$SOCK" ] && [ -s "$OUT/serve.out" ] && break; sleep 0.1; done
TLSURI=$(head -n 1 "$OUT/serve.out")
TLSDEV=$(THINSR_NBD_TLS_DIR=$THINSR_SCRATCH/tls "$THINSR_SCHEME_DIR/nbd" attach "$TLSURI")
check "the nbd scheme opens thinvdi-serve's nbds+unix URI with the host's PSK, reading the snapshot (cmp)" \
    same_bytes $((256 << 20)) "$TLSDEV" "$OUT/s1.raw"
THINSR_NBD_TLS_DIR=$THINSR_SCRATCH/tls "$THINSR_SCHEME_DIR/nbd" detach "$TLSURI" "$TLSDEV"
kill -TERM $serve; wait $serve
D=$(thinvdi-serve transfer "$XS2" --port 10811 --detach --json)
check_eq "--detach prints the URI" "nbd://127.0.0.1:10811/$XS2" "$(echo "$D" | jq -r .uri)"
check "and a pid file with the server's pid" test "$(cat "$(echo "$D" | jq -r .pid_file)")" = "$(echo "$D" | jq -r .pid)"
check "qemu-img reads it over TCP" qemu-img compare -q -f raw "$(echo "$D" | jq -r .uri)" "$S2P"
kill "$(echo "$D" | jq -r .pid)"
for _ in $(seq 50); do kill -0 "$(echo "$D" | jq -r .pid)" 2>/dev/null || break; sleep 0.1; done
check "killing the pid stops it and removes the pid file" test ! -e "$(echo "$D" | jq -r .pid_file)"
W=$(thinvdi-create transfer --name writable --size 16M)
WS=$THINSR_SCRATCH/w.sock
thinvdi-serve transfer "$W" --socket "$WS" --writable > /dev/null &
serve=$!
for _ in $(seq 100); do [ -S "$WS" ] && break; sleep 0.1; done
head -c 1M /dev/urandom > "$OUT/w.data"
check "--writable: nbdcopy writes through it" nbdcopy "$OUT/w.data" "nbd+unix:///$W?socket=$WS"
kill -TERM $serve; wait $serve
WP=$(thinvdi-attach --read-only transfer "$W")
check "and the volume holds the data" cmp -n $((1 << 20)) "$OUT/w.data" "$WP"
thinvdi-detach transfer "$W"
thinvdi-serve transfer "$W" --socket "$WS" > /dev/null &
serve=$!
for _ in $(seq 100); do [ -S "$WS" ] && break; sleep 0.1; done
expect_failure 3 "a read-write attach for a holder (as Datapath.activate makes it) of a volume served read-only is refused" \
    thinvdi-attach --holder vm transfer "$W"
check "naming what holds it: the server, reading it" grep -q "(thinvdi-serve, reading it)" /tmp/ef.err
kill -TERM $serve; wait $serve
expect_failure 64 "--writable on a snapshot is refused" thinvdi-serve transfer "$XS1" --socket "$WS" --writable
expect_failure 3 "serving a volume attached read-write is refused" thinvdi-serve transfer "$XV" --socket "$WS"

test_begin "several read-only holders share one snapshot's device while the VM writes"
check "holder r1" thinvdi-attach --read-only --holder r1 transfer "$XS1"
check "holder r2" thinvdi-attach --read-only --holder r2 transfer "$XS1"
dd if=/dev/urandom of="$P" bs=1M count=8 oflag=direct conv=notrunc status=none &
writer=$!
cmp "$S1P" "$OUT/s1.raw" & r1=$!
cmp "$S1P" "$OUT/s1.raw" & r2=$!
wait $r1; a=$?; wait $r2; b=$?; wait $writer
check_eq "both readers read the snapshot whole while the live volume was written" "0 0" "$a $b"
check "r1 detaches; the device stays for r2" bash -c "thinvdi-detach --holder r1 transfer '$XS1' && test -b '$S1P' && cmp -n 1048576 '$S1P' '$OUT/s1.raw'"
check "r2 detaches; the device goes" bash -c "thinvdi-detach --holder r2 transfer '$XS1' && test ! -e '$S1P'"
expect_failure 64 "a holder name with a slash is refused" thinvdi-attach --read-only --holder a/b transfer "$XS1"
expect_failure 64 "a process holder's name cannot be taken" thinvdi-attach --read-only --holder process.1 transfer "$XS1"
S1P=$(thinvdi-attach --read-only transfer "$XS1")
check "an attach without --holder keeps counting: an export's hold and release leave it attached" \
    bash -c "thinvdi-export transfer '$XS1' '$OUT/again.raw' && test -b '$S1P'"
check "a holder that does not hold it cannot detach it" bash -c "thinvdi-detach --holder nobody transfer '$XS1' && test -b '$S1P'"
check "a plain detach does" bash -c "thinvdi-detach transfer '$XS1' && test ! -e '$S1P'"
check "an export holds the device open: a plain detach during it is refused" bash -c "
    thinvdi-export transfer '$BIG' '$OUT/held.qcow2' --progress=json 2>'$OUT/held.err' & pid=\$!
    for _ in \$(seq 200); do [ -s '$OUT/held.err' ] && break; sleep 0.05; done
    ! thinvdi-detach transfer '$BIG' 2>/dev/null; refused=\$?
    wait \$pid && [ \$refused = 0 ]"
thinvdi-detach transfer "$XS2"
thinvdi-detach transfer "$XV"
final_metadata_check "$XSR"
thinsr-destroy --force "$SMALL"
# Give the lane's tmpfs back what this part wrote (images, exports, loop files).
rm -rf "$IMG"
free_loop "$XP1"; free_loop "$XP2"
