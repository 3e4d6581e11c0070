# Pool full and metadata low: the on-full policy, growing the pool back to
# read-write with thinsr-extend, and the metadata reserve.

test_begin "pool full: --on-full error fails writes, data survives, thinsr-extend recovers"
new_loop SD1 256
new_loop SD2 128
FULL=$(thinsr-create --name full --device "$SD1" --pool-size 64M --on-full error)
check_eq "policy shown by thinsr-stat" "error" "$(sr_field "$FULL" on_full)"
check "error_if_no_space in the live table" bash -c "dmsetup table $(pool_name "$FULL") | grep -q error_if_no_space"
A=$(thinvdi-create full --name a --size 48M)
B=$(thinvdi-create full --name b --size 48M)
PA=$(thinvdi-attach full "$A"); PB=$(thinvdi-attach full "$B")
write_pattern "$PA" full-a 40
dd if=/dev/urandom of="$PB" bs=1M count=40 oflag=direct status=none 2>/dev/null
check_eq "writes beyond the pool's end fail at once" "1" "$?"
check_eq "pool is out of data space" "out_of_data_space" "$(pool_status_field "$FULL" 5)"
check_eq "a full pool is degraded, not unavailable: Healthy, so sr-scan works" "Healthy" "$(sr_field "$FULL" 'health[0]')"
check "thinsr-stat health says why" bash -c "thinsr-stat --json full | jq -r '.health[1]' | grep -q '^degraded: the pool is out of data space'"
check "thinvdi-ls works on the full pool" thinvdi-ls full
check "data committed before the pool filled is intact" same_as_pattern "$PA" full-a
expect_failure 4 "creating a volume in a full pool is refused (No_space)" thinvdi-create full --name c --size 4M
check "thinsr-extend --device adds a disk and grows the pool" thinsr-extend full --device "$SD2" --size +32M
check_eq "pool back to read-write" "rw" "$(pool_status_field "$FULL" 5)"
check_eq "thinsr-stat health, grown" '["Healthy",""]' "$(sr_json "$FULL" | jq -c .health)"
write_pattern "$PB" full-b 40
check "writes succeed after growing" same_as_pattern "$PB" full-b
check "earlier data still intact" same_as_pattern "$PA" full-a
check "the new disk is in the SR's VG" bash -c "pvs --noheadings -o pv_name,vg_name | grep -q '$SD2 *thinsr_'"

test_begin "pool full: --on-full queue holds writes until the pool grows"
check "thinsr-set --on-full queue" thinsr-set full --on-full queue
check_eq "policy changed live" "queue" "$(sr_field "$FULL" on_full)"
check "no error_if_no_space in the live table" bash -c "! dmsetup table $(pool_name "$FULL") | grep -q error_if_no_space"
used=$(sr_field "$FULL" data_used); total=$(sr_field "$FULL" data_total)
C=$(thinvdi-create full --name c --size $(( (total - used) / 1048576 + 32 ))M)
PC=$(thinvdi-attach full "$C")
head -c $(( (total - used) / 1048576 + 8 ))M < <(openssl enc -aes-128-ctr -nosalt -pass pass:queued -in /dev/zero 2>/dev/null) > "$THINSR_SCRATCH/pattern-queued"
dd if="$THINSR_SCRATCH/pattern-queued" of="$PC" bs=1M oflag=direct conv=fsync status=none &
writer=$!
for _ in $(seq 200); do [ "$(pool_status_field "$FULL" 5)" = out_of_data_space ] && break; sleep 0.1; done
check_eq "pool fills while the writer waits" "out_of_data_space" "$(pool_status_field "$FULL" 5)"
check "the writer is still waiting (queued, not failed)" kill -0 "$writer"
check "thinsr-stat answers while writes are queued" thinsr-stat full
VGF=$(vg_of "$FULL")
check "thinsr-extend grows the pool from VG free space" thinsr-extend full
wait "$writer"
check_eq "the queued writes completed after the pool grew" 0 "$?"
check "queued data intact" same_as_pattern "$PC" queued
check "earlier data still intact" same_as_pattern "$PA" full-a
for k in "$A" "$B" "$C"; do thinvdi-detach full "$k"; done
check "thinsr-check clean after filling and growing" thinsr-check full
final_metadata_check "$FULL"

test_begin "metadata reserve: new volumes are refused before the metadata fills"
new_loop SD3 256
META=$(thinsr-create --name meta-low --device "$SD3" --metadata-size 2M)
MPOOL=$(pool_name "$META")
total=$(pool_status_field "$META" 2 | cut -d/ -f2)
check "small metadata as asked (2M rounded up to the VG's 4 MiB extent)" test "$total" -le 1024
# thinsr's reserve: the kernel's (a tenth, at most 4096 blocks) plus an eighth.
reserve=$(( (total / 10 < 4096 ? total / 10 : 4096) + (total / 8 > 64 ? total / 8 : 64) ))
# create_thins POOL FIRST COUNT: sends the pool "create_thin ID" for COUNT ids
# from FIRST, all from one process through the kernel's DM_TARGET_MSG ioctl
# (what `dmsetup message` sends; a dmsetup per message cost over a minute in
# the UML lab). Prints how many it made.
create_thins() {
    python3 - "$@" <<'PY'
import fcntl, os, struct, sys
pool, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
HEADER = 312                                          # sizeof(struct dm_ioctl)
DM_TARGET_MSG = (3 << 30) | (HEADER << 16) | (0xfd << 8) | 14
control = os.open("/dev/mapper/control", os.O_RDWR)
made = 0
for thin_id in range(first, first + count):
    message = struct.pack("=Q", 0) + b"create_thin %d\0" % thin_id   # struct dm_target_msg
    size = HEADER + len(message) + (-(HEADER + len(message)) % 8)
    header = struct.pack("=3I7IQ128s129s7s", 4, 0, 0, size, HEADER, 0, 0, 0, 0, 0, 0, pool.encode(), b"", b"")
    try:
        fcntl.ioctl(control, DM_TARGET_MSG, bytearray(header + message).ljust(size, b"\0"))
    except OSError:
        break
    made += 1
print(made)
PY
}
# Fill the metadata behind thinsr's back with empty thin devices until less
# than the reserve is free (each takes at least a block).
id=100000
while :; do
    used=$(pool_status_field "$META" 2 | cut -d/ -f1)
    [ $((total - used)) -lt "$reserve" ] && break
    made=$(create_thins "$MPOOL" "$id" $((total - used - reserve + 1)))
    [ "${made:-0}" -gt 0 ] || { echo "     | the pool took no create_thin message"; break; }
    id=$((id + made))
done
check "empty thin devices filled the metadata to within the reserve ($((id - 100000)) made, $((total - used)) blocks free)" \
    test $((total - used)) -lt "$reserve"
expect_failure 4 "a create is refused with No_space while the metadata keeps its reserve" thinvdi-create meta-low --name late --size 4M
check_eq "the pool is still read-write" "rw" "$(pool_status_field "$META" 5)"
check "thinsr-check --repair deletes the filler ids" bash -c "thinsr-check --repair meta-low >/dev/null; [ \$? = 6 ]"
check "a create works again" thinvdi-create meta-low --name late --size 4M
check "thinsr-check clean" thinsr-check meta-low
final_metadata_check "$META"
