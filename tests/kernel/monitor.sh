# The pool monitor (thinsr-monitor) and each SR's autoextend policy, checked
# with dmsetup, lvs, cmp and the journal's words (the monitor's stderr).

mon_pool_mib() { dmsetup status "$(pool_name "$1")" | awk '{split($6, d, "/"); print int(d[2] * 64 / 1024)}'; }
mon_data_lv_mib() { lvs --noheadings --units m --nosuffix -o lv_size "$2/thinsr_${1//-/}_data" | awk '{printf "%d", $1}'; }

# rrdd's directory, here in scratch (on a xapi host: /dev/shm/metrics).
export THINSR_METRICS_DIR=$THINSR_SCRATCH/metrics
mkdir -p "$THINSR_METRICS_DIR"
# rrdd_values FILE: decodes rrdd's plugin protocol v2 (python, not our code): checks both CRC-32s and
# prints "name=value owner" per datasource, in order.
rrdd_values() {
    python3 - "$1" <<'PY'
import json, struct, sys, time, zlib
data = open(sys.argv[1], "rb").read()
assert data[:11] == b"DATASOURCES", "header"
data_crc, meta_crc, count = struct.unpack(">IIi", data[11:23])
(stamp,) = struct.unpack(">q", data[23:31])
assert abs(stamp - time.time()) < 120, "timestamp: int64 seconds, now (got %d)" % stamp
values_end = 31 + 8 * count
assert zlib.crc32(data[23:values_end]) & 0xffffffff == data_crc, "data checksum"
(length,) = struct.unpack(">I", data[values_end:values_end + 4])
metadata = data[values_end + 4:values_end + 4 + length]
assert zlib.crc32(metadata) & 0xffffffff == meta_crc, "metadata checksum"
sources = json.loads(metadata)["datasources"]
assert all(isinstance(v, str) for s in sources.values() for v in s.values()), "metadata values are strings"
values = struct.unpack(">%dq" % count, data[31:values_end])
for (name, meta), value in zip(sources.items(), values):
    print("%s=%d %s" % (name, value, meta["owner"]))
PY
}

# wait_monitor PID: until that monitor holds the lock (its pid file names it), up to 30 s.
wait_monitor() {
    for _ in $(seq 300); do [ "$(cat /run/thinsr/monitor.pid 2>/dev/null)" = "$1" ] && return 0; sleep 0.1; done
    echo "monitor $1 did not start" >&2
}

test_begin "autoextend policy: thinsr-set, thinsr-stat, the pool's low water mark"
new_loop MO1 1200
pvcreate -q "$MO1" >/dev/null && vgcreate -q monvg "$MO1" >/dev/null
MSR=$(thinsr-create --name mon --vg monvg --pool-size 64M)
check_eq "a be-nice SR keeps the pool it was given: growth off (threshold 100), step 20%, warn at 75%" "100 20% 75" \
    "$(thinsr-stat --json mon | jq -r '"\(.autoextend_threshold) \(.autoextend_step) \(.warning_threshold)"')"
check_eq "its low water mark is then a twentieth of 1024 blocks" 51 \
    "$(dmsetup table "$(pool_name "$MSR")" | awk '{print $7}')"
new_loop MO2 700
OSR=$(thinsr-create --name monown --device "$MO2")
check_eq "an own-the-world SR grows by default: at 80% by 20%, low water mark 20% of its blocks" \
    "80 $(( $(dmsetup status "$(pool_name "$OSR")" | awk '{split($6, d, "/"); print d[2]}') * 20 / 100 ))" \
    "$(thinsr-stat --json monown | jq -r .autoextend_threshold) $(dmsetup table "$(pool_name "$OSR")" | awk '{print $7}')"
check "thinsr-detach monown" thinsr-detach monown
check "thinsr-destroy --force monown" thinsr-destroy --force monown
check "and it left no rrdd file" test ! -e "$THINSR_METRICS_DIR/thinsr-$OSR"
check "thinsr-set --autoextend-threshold 60 --autoextend-step 32M --warning-threshold 50" \
    thinsr-set mon --autoextend-threshold 60 --autoextend-step 32M --warning-threshold 50
check_eq "thinsr-stat shows it" "60 33554432 50" \
    "$(thinsr-stat --json mon | jq -r '"\(.autoextend_threshold) \(.autoextend_step) \(.warning_threshold)"')"
check "and in words" bash -c "thinsr-stat mon | grep -q 'at 60% used, by 32M'"
check_eq "the live pool's low water mark followed (40% of 1024 blocks)" 409 "$(dmsetup table "$(pool_name "$MSR")" | awk '{print $7}')"
expect_failure 64 "a threshold below 50 is refused" thinsr-set mon --autoextend-threshold 30
expect_failure 64 "a threshold above 100 is refused" thinsr-set mon --autoextend-threshold 101
expect_failure 64 "a warning level of 0 is refused" thinsr-set mon --warning-threshold 0
expect_failure 64 "a step that is neither a size nor a percent is refused" thinsr-set mon --autoextend-step 5x
expect_failure 64 "a step of 0% is refused" thinsr-set mon --autoextend-step 0%
expect_failure 64 "--interval 0 is refused" thinsr-monitor --interval 0
thinsr-detach mon && thinsr-attach mon >/dev/null
check_eq "the policy survives a detach and attach (low water mark too)" "60 409" \
    "$(thinsr-stat --json mon | jq -r .autoextend_threshold) $(dmsetup table "$(pool_name "$MSR")" | awk '{print $7}')"

test_begin "thinsr-monitor --once grows a pool past its threshold, by the step"
MV=$(thinvdi-create mon --name disk --size 600M)
MP=$(thinvdi-attach mon "$MV")
dd if=/dev/urandom of="$MP" bs=1M count=40 oflag=direct status=none   # 40 of 64 MiB: 63%
check "below the threshold nothing grows" bash -c "thinsr-set mon --autoextend-threshold 70 && thinsr-monitor --once --json | jq -e '.[] | select(.sr == \"$MSR\") | .grown_bytes == 0 and .level == \"warning\"'"
thinsr-set mon --autoextend-threshold 60
# xapi's CLI, recorded: on a xapi host the monitor's warnings become xapi messages (alerts).
printf '#!/bin/sh\nprintf "%%s|" "$@" >> %s/xe-calls; echo >> %s/xe-calls\n' "$THINSR_SCRATCH" "$THINSR_SCRATCH" > "$THINSR_SCRATCH/xe"
chmod +x "$THINSR_SCRATCH/xe"
THINSR_XE=$THINSR_SCRATCH/xe thinsr-monitor --once --json > "$THINSR_SCRATCH/mon.json" 2>/dev/null
check_eq "at it, the pool grows by 32 MiB (dmsetup status)" 96 "$(mon_pool_mib "$MSR")"
check_eq "and the data LV with it (lvs)" 96 "$(mon_data_lv_mib "$MSR" monvg)"
check_eq "the report says so" "grown 33554432" \
    "$(jq -r --arg u "$MSR" '.[] | select(.sr == $u) | "\(.level) \(.grown_bytes)"' "$THINSR_SCRATCH/mon.json")"
check "the growth was raised as a xapi message on the SR (xe message-create, priority 5)" \
    grep -q "^message-create|name=THINSR_POOL_GROWN|body=.*grew data by.*|priority=5|sr-uuid=$MSR|$" "$THINSR_SCRATCH/xe-calls"
check_pool_agrees "$MSR" "after a monitor growth"
check_eq "the pool's low water mark follows its new size (40% of 1536 blocks)" 614 "$(dmsetup table "$(pool_name "$MSR")" | awk '{print $7}')"

test_begin "SR statistics for xapi's rrdd: the monitor publishes the pool's figures"
METRICS=$THINSR_METRICS_DIR/thinsr-$MSR
check "the monitor wrote rrdd's file for the SR" test -s "$METRICS"
read -r _ _ _ _ used_meta_total used_data_total _ < <(dmsetup status "$(pool_name "$MSR")")
check_eq "protocol v2, checksums good; the figures are dmsetup status arithmetic, owned by the SR" \
    "thinsr_data_total=$(( ${used_data_total#*/} * 65536 )) sr $MSR
thinsr_data_used=$(( ${used_data_total%/*} * 65536 )) sr $MSR
thinsr_metadata_total=$(( ${used_meta_total#*/} * 4096 )) sr $MSR
thinsr_metadata_used=$(( ${used_meta_total%/*} * 4096 )) sr $MSR
thinsr_volumes=1 sr $MSR" "$(rrdd_values "$METRICS")"
check_eq "SR.stat names it as xapi registers it" "[\"xeno+shm:///thinsr-$MSR\"]" "$(thinsr-stat --json mon | jq -c .datasources)"
file_before=$(stat -c '%s %i' "$METRICS")
thinsr-monitor --once 2>/dev/null
check_eq "later looks rewrite it in place, same size and inode (rrdd maps it once)" "$file_before" "$(stat -c '%s %i' "$METRICS")"

test_begin "a writer at full speed fills a small pool while the monitor grows it"
thinsr-set mon --autoextend-threshold 70 --autoextend-step 64M --warning-threshold 60
thinsr-monitor --interval 1 2> "$THINSR_SCRATCH/monitor.log" &
monitor=$!
wait_monitor $monitor
expect_failure 3 "a second monitor is refused while one runs" thinsr-monitor --once
write_pattern "$MP" monwriter 400   # 400 MiB into a pool of 96 MiB: it must grow four times or more
writer_status=$?
check_eq "the writer saw no error" 0 "$writer_status"
check "its data is all there (cmp)" same_as_pattern "$MP" monwriter
check "the monitor grew the pool several times (its journal lines)" test "$(grep -c ': grew data by' "$THINSR_SCRATCH/monitor.log")" -ge 4
check "the pool is large enough now (dmsetup status)" test "$(mon_pool_mib "$MSR")" -ge 400
check_eq "and in rw mode, not out of data space" rw "$(pool_status_field "$MSR" 5)"
kill -TERM $monitor; wait $monitor
check_eq "SIGTERM stops the monitor with exit 0" 0 "$?"
check "and it said it stopped" grep -q "stopped" "$THINSR_SCRATCH/monitor.log"

test_begin "a killed monitor leaves the pool as it was; the next start catches up"
thinsr-monitor --interval 60 2>/dev/null &
monitor=$!
wait_monitor $monitor
kill -KILL $monitor; wait $monitor 2>/dev/null
size=$(mon_pool_mib "$MSR")
used_target=$(( size * 80 / 100 ))
dd if=/dev/urandom of="$MP" bs=1M seek=420 count=$(( used_target - 400 > 0 ? used_target - 400 : 1 )) oflag=direct conv=notrunc status=none
check_eq "nothing grew while no monitor ran" "$size" "$(mon_pool_mib "$MSR")"
check "a new monitor starts (the killed one's lock went with it) and grows the pool" bash -c "
    thinsr-monitor --once --json | jq -e '.[] | select(.sr == \"$MSR\") | .grown_bytes > 0'"

test_begin "no room to grow: warn once per crossing, the on-full policy applies; space added later is used"
lvcreate -q -y -l 100%FREE -n filler monvg >/dev/null
thinsr-set mon --autoextend-threshold 50 --on-full error
thinsr-monitor --once 2> "$THINSR_SCRATCH/stuck1.log"
thinsr-monitor --once 2> "$THINSR_SCRATCH/stuck2.log"
check "the first look warns that the VG has no free space" grep -q "no free space to grow into" "$THINSR_SCRATCH/stuck1.log"
check_eq "the second says nothing (once per crossing)" 0 "$(grep -c 'no free space' "$THINSR_SCRATCH/stuck2.log")"
FV=$(thinvdi-create mon --name fill --size 1G)
FP=$(thinvdi-attach mon "$FV")
timeout 60 dd if=/dev/urandom of="$FP" bs=1M count=1000 oflag=direct status=none 2>/dev/null
fill_status=$?
check "with --on-full error, writing past the pool's data fails with an I/O error, not a hang (exit $fill_status)" \
    test "$fill_status" != 0 -a "$fill_status" != 124
check_eq "the pool is out of data space" out_of_data_space "$(pool_status_field "$MSR" 5)"
size=$(mon_pool_mib "$MSR")
lvremove -q -y monvg/filler >/dev/null
thinsr-set mon --autoextend-step 10G   # more than the VG has: grow what there is, and say so
thinsr-monitor --once 2> "$THINSR_SCRATCH/regrow.log"
check "once space is back, the monitor grows what there is and says it was less than the step" \
    grep -q "less than the step" "$THINSR_SCRATCH/regrow.log"
check "the pool grew" test "$(mon_pool_mib "$MSR")" -gt "$size"
check_eq "and left out-of-data-space mode" rw "$(pool_status_field "$MSR" 5)"
used_before=$(dmsetup status "$(pool_name "$MSR")" | awk '{split($6, d, "/"); print d[1]}')
check "writes to unprovisioned blocks work again" dd if=/dev/urandom of="$FP" bs=1M seek=1016 count=8 oflag=direct conv=notrunc status=none
check "and provision new blocks" test "$(dmsetup status "$(pool_name "$MSR")" | awk '{split($6, d, "/"); print d[1]}')" -gt "$used_before"
check "the data written before is intact" same_as_pattern "$MP" monwriter
thinvdi-detach mon "$FV"
thinvdi-detach mon "$MV"
final_metadata_check "$MSR"
check "the SR's detach removed its rrdd file" test ! -e "$METRICS"
# (Other parts of the lane may leave SRs attached, whose files the monitor keeps: only this part's are checked.)
check "nor the own-the-world SR's" test ! -e "$THINSR_METRICS_DIR/thinsr-$OSR"
unset THINSR_METRICS_DIR
vgremove -q -y monvg >/dev/null
# The writers filled about a GiB of the lane's scratch tmpfs: give it back to the parts after this one.
pvremove -q "$MO1" >/dev/null 2>&1; free_loop "$MO1"; free_loop "$MO2"
