#!/usr/bin/env bash
# `make bench`: thinsr against LVM thin and the raw device, side by side, in
# one lab run on one loop device. Every figure is whole-process wall time
# (what a plugin or a sysadmin pays) unless it says otherwise. Raw samples go
# to $BENCH_OUT/samples.tsv; report.py turns them into the table and JSON.
# Usage: bench/run.sh [--smoke] [--only "SECTION..."] [--dist ROOT]  (ROOT: make dist's tree, timed at start-up)  (sections: startup control revert syscalls datapath backup space templates motion)
set -u
source "$(dirname "$0")/../tests/kernel/lib.sh"

MODE=full SECTIONS=all
while [ $# -gt 0 ]; do
    case $1 in
        --smoke) MODE=smoke ;;
        --only) SECTIONS=$2; shift ;;
        --only=*) SECTIONS=${1#--only=} ;;
        --dist) BENCH_DIST=$2; shift ;;
        *) echo "bench: unknown argument $1 (give --smoke, --only SECTIONS and/or --dist ROOT)" >&2; exit 64 ;;
    esac
    shift
done
want() { [ "$SECTIONS" = all ] || [[ " $SECTIONS " == *" $1 "* ]]; }
if [ "$MODE" = smoke ]; then RUNS=1 MANY_THINSR=20 MANY_LVM=10 WRITTEN_MIB=32 FIO_MIB=16 FIO_RUNTIME=250ms
    EXPORT_GIB=1 CHANGED_SMALL=256M CHANGED_BIG=2G CHANGED_MIB=16 ZERO_MIB=32 ZERO_RUNS=1 MON_POOL_MIB=32 MON_WRITE_MIB=96
    TPL_SMALL=128M TPL_BIG=256M TPL_DATA_MIB=32 TPL_RUNS=1 TPL_READ_SECONDS=0 PAIRED_READS=1
    MOT_BIG_MIB=512 MOT_SMALL_MIB=64 MOT_DATA_MIB=8
else RUNS=10 MANY_THINSR=1000 MANY_LVM=300 WRITTEN_MIB=1024 FIO_MIB=128 FIO_RUNTIME=5s
    EXPORT_GIB=10 CHANGED_SMALL=1G CHANGED_BIG=100G CHANGED_MIB=256 ZERO_MIB=512 ZERO_RUNS=3 MON_POOL_MIB=128 MON_WRITE_MIB=512
    TPL_SMALL=1G TPL_BIG=10G TPL_DATA_MIB=256 TPL_RUNS=3 TPL_READ_SECONDS=1 PAIRED_READS=5
    MOT_BIG_MIB=10240 MOT_SMALL_MIB=1024 MOT_DATA_MIB=100; fi
# Motion figures: mirrors of a MOT_BIG_MIB and a MOT_SMALL_MIB volume holding
# the same MOT_DATA_MIB to a writable NBD server of another volume; the small
# one mirrored whole (--full) through the same path; fio's write rate on a
# mirrored volume against the same volume unmirrored.
MOTION_MIB=$(( MOT_DATA_MIB * 6 + MOT_SMALL_MIB + FIO_MIB * 2 + 64 ))
# Template figures: qcow2 templates of TPL_SMALL and TPL_BIG (1G and 10G; the
# smoke run's are smaller: its offline hydration reads the whole clone) holding
# the same TPL_DATA_MIB of data; the copy-it-in alternative writes that data.
TEMPLATE_MIB=$(( TPL_DATA_MIB * 4 + 64 ))
# Space figures: zeroing a ZERO_MIB preallocated volume against dd and
# blkdiscard -z on an LV of the same size; a writer putting MON_WRITE_MIB
# into a pool of MON_POOL_MIB that the monitor grows (at 70%, by the pool's size).
SPACE_MIB=$(( 2 * ZERO_MIB + FIO_MIB + 16 + MON_WRITE_MIB * 2 + MON_POOL_MIB + 256 ))
# Backup figures: an export of an EXPORT_GIB volume with 1% written; changed
# blocks with CHANGED_MIB changed on a small and a big volume; an import of a
# 1%-allocated qcow2 of EXPORT_GIB.
EXPORT_MIB=$(( EXPORT_GIB * 1024 / 100 ))
BACKUP_MIB=$(( EXPORT_MIB * 3 + CHANGED_MIB * 4 + 64 ))
BENCH_OUT=${BENCH_OUT:-$PWD/.build/vm-out/bench}
BENCH_HELLO=${BENCH_HELLO:-$PWD/.build/bench-hello}
mkdir -p "$BENCH_OUT"
SAMPLES=$BENCH_OUT/samples.tsv
printf 'group\toperation\tside\tmicroseconds\tnote\n' > "$SAMPLES"

# The clock in microseconds, read by the shell itself (a date process costs tens
# of ms in the lab, and each sample takes two readings).
now_us() { echo "${EPOCHREALTIME/./}"; }
# sample GROUP OPERATION SIDE COMMAND...: times one run of COMMAND; records the
# tool's own work time too when it reports one (THINSR_TIMING).
sample() {
    local group=$1 op=$2 side=$3; shift 3
    local start end work="" line
    start=${EPOCHREALTIME/./}
    THINSR_TIMING=1 "$@" >/dev/null 2>"$BENCH_OUT/last.err"
    local status=$?
    end=${EPOCHREALTIME/./}
    [ $status = 0 ] || { echo "bench: '$*' failed: $(tail -n 1 "$BENCH_OUT/last.err")" >&2; return 1; }
    printf '%s\t%s\t%s\t%s\t\n' "$group" "$op" "$side" $((10#$end - 10#$start)) >> "$SAMPLES"
    # (The last "thinsr-timing: TOOL MICROSECONDS" line, read by the shell.)
    while IFS= read -r line; do
        [[ $line =~ ^thinsr-timing:\ [^\ ]*\ (.*)$ ]] && work=${BASH_REMATCH[1]}
    done <"$BENCH_OUT/last.err"
    [ -n "$work" ] && printf '%s\t%s\t%s\t%s\twork\n' "$group" "$op" "$side" "$work" >> "$SAMPLES"
    return 0
}
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >> "$SAMPLES"; }
spread_writes() { # spread_writes DEVICE MIB: MIB of random data in 1 MiB pieces spread over the device
    # (One process writes them all, as one dd per piece did: O_DIRECT on a block device, tmpfs has none.)
    python3 - "$1" "$2" <<'PY'
import mmap, os, stat, sys
path, pieces = sys.argv[1], int(sys.argv[2])
block = stat.S_ISBLK(os.stat(path).st_mode)
fd = os.open(path, os.O_WRONLY | (os.O_DIRECT if block else 0))
size_mib = os.lseek(fd, 0, os.SEEK_END) >> 20
buffer = mmap.mmap(-1, 1 << 20)   # page-aligned, as O_DIRECT needs
for i in range(pieces):
    buffer.seek(0)
    buffer.write(os.urandom(1 << 20))
    if os.pwrite(fd, buffer, (i * size_mib // pieces) << 20) != 1 << 20:
        sys.exit("short write")
os.close(fd)
PY
}

# ---------------------------------------------------------------- the lab
# One VG on one loop device holds both pools and the linear LV, so every
# comparison runs on the same device.
thinsr_pool_mib=$(( WRITTEN_MIB + FIO_MIB + BACKUP_MIB + MOTION_MIB + 512 )) lvm_pool_mib=$(( 512 + EXPORT_MIB ))
thinsr_pool_mib=$(( thinsr_pool_mib + TEMPLATE_MIB ))
size_mib=$(( thinsr_pool_mib + lvm_pool_mib + FIO_MIB + SPACE_MIB + 1024 ))   # + catalog, metadata, spare, slack
new_loop BENCH_DEV "$size_mib"
pvcreate -q "$BENCH_DEV" >/dev/null && vgcreate -q benchvg "$BENCH_DEV" >/dev/null
lvcreate -q -y --type thin-pool -L ${lvm_pool_mib}M -n lvmpool benchvg >/dev/null
SR=$(thinsr-create --name bench --vg benchvg --pool-size ${thinsr_pool_mib}M) || { echo "bench: thinsr-create failed" >&2; exit 1; }
lvcreate -q -y -n linear -L $(( FIO_MIB + 16 ))M benchvg >/dev/null
echo "bench: SR $SR and LVM pool benchvg/lvmpool on $BENCH_DEV ($size_mib MiB); $RUNS runs per figure"

# ---------------------------------------------------------------- process start-up floor
if want startup; then
for _ in $(seq "$RUNS"); do
    sample startup "/bin/true" floor /bin/true
    sample startup "static Swift hello" floor "$BENCH_HELLO"
    sample startup "thinsr --list" thinsr thinsr --list
    # The release (make dist) through its private loader and libraries, against today's build.
    if [ -x "${BENCH_DIST:-}/usr/sbin/thinsr" ]; then
        runtime=$BENCH_DIST/usr/lib/thinsr/runtime
        sample startup "thinsr --list: make dist's release vs the build" thinsr \
            "$runtime/ld-linux-x86-64.so.2" --library-path "$runtime" "$BENCH_DIST/usr/sbin/thinsr" --list
        sample startup "thinsr --list: make dist's release vs the build" reference thinsr --list
    fi
done
fi  # startup

# ---------------------------------------------------------------- control operations
if want control; then
# control_round GROUP: each operation RUNS times on both sides.
counter=0
control_round() {
    local group=$1 prefix=$2 i
    for i in $(seq "$RUNS"); do
        counter=$((counter + 1)); local n=$prefix$counter
        sample "$group" create thinsr thinvdi-create bench --name "v$n" --size 64M
        sample "$group" create lvm lvcreate -q -T benchvg/lvmpool -V 64M -n "v$n"
        sample "$group" snapshot thinsr thinvdi-snapshot bench "v$n" --name "s$n"
        sample "$group" snapshot lvm lvcreate -q -s benchvg/"v$n" -n "s$n"
        sample "$group" clone thinsr thinvdi-clone bench "v$n" --name "c$n"
        sample "$group" clone lvm sh -c "lvcreate -q -s -kn benchvg/v$n -n c$n && lvchange -q -ay benchvg/c$n"
        sample "$group" attach thinsr thinvdi-attach bench "c$n"
        thinvdi-detach bench "c$n"
        lvchange -q -an benchvg/"c$n"
        sample "$group" attach lvm lvchange -q -ay benchvg/"c$n"
        sample "$group" revert thinsr thinvdi-revert bench "c$n" "s$n"
        sample "$group" revert lvm sh -c "lvremove -q -y benchvg/c$n && lvcreate -q -s -kn -n c$n benchvg/s$n"
        sample "$group" destroy thinsr thinvdi-destroy bench "c$n"
        sample "$group" destroy lvm lvremove -q -y benchvg/"c$n"
    done
}
populate() { # populate SIDE COUNT: bring the side's volume count up to COUNT
    # Four at a time: each side serializes on its own lock, but process
    # start-up (most of the cost in an emulated VM) overlaps.
    local side=$1 want=$2 have
    if [ "$side" = thinsr ]; then have=$(thinvdi-ls --json bench | jq length); else have=$(lvs --noheadings benchvg | grep -c ' Vwi'); fi
    [ "$have" -ge "$want" ] && return 0
    if [ "$side" = thinsr ]; then
        seq $((have + 1)) "$want" | xargs -P 4 -I{} thinvdi-create bench --name "fill{}" --size 16M >/dev/null
    else
        seq $((have + 1)) "$want" | xargs -P 4 -I{} lvcreate -q -T benchvg/lvmpool -V 16M -n "fill{}" >/dev/null
    fi
}
populate thinsr 10; populate lvm 10
control_round "at 10 volumes" few
# (The smoke run, which only proves the harness works, stops at 10 volumes.)
if [ "$MODE" = full ]; then
populate thinsr "$MANY_THINSR"; populate lvm "$MANY_LVM"
record "volumes" "in the pool" thinsr "$(thinvdi-ls --json bench | jq length)" count
record "volumes" "in the pool" lvm "$(lvs --noheadings benchvg | grep -c ' Vwi')" count
control_round "at many volumes" many
for _ in $(seq "$RUNS"); do
    sample "listing at many volumes" "list" thinsr thinvdi-ls bench
    sample "listing at many volumes" "list" lvm lvs benchvg
    sample "listing at many volumes" "pool stat" thinsr thinsr-stat bench
    sample "listing at many volumes" "pool stat" lvm lvs -o lv_name,data_percent,metadata_percent benchvg/lvmpool
done
fi
fi  # control

# ---------------------------------------------------------------- revert is O(1)
if want revert; then
E=$(thinvdi-create bench --name empty --size $(( WRITTEN_MIB + 64 ))M)
F=$(thinvdi-create bench --name full --size $(( WRITTEN_MIB + 64 ))M)
PF=$(thinvdi-attach bench "$F")
dd if=/dev/urandom of="$PF" bs=1M count="$WRITTEN_MIB" oflag=direct status=none
thinvdi-detach bench "$F"
ES=$(thinvdi-snapshot bench "$E" --name empty-snap)
FS=$(thinvdi-snapshot bench "$F" --name full-snap)
for _ in $(seq "$RUNS"); do
    sample "revert by data written" "revert, empty volume" thinsr thinvdi-revert bench "$E" "$ES"
    sample "revert by data written" "revert, $WRITTEN_MIB MiB written" thinsr thinvdi-revert bench "$F" "$FS"
done
fi  # revert

# ---------------------------------------------------------------- where the time goes
if want syscalls; then
syscalls() { # syscalls GROUP OP SIDE COMMAND...: ioctls and process spawns of one run
    local group=$1 op=$2 side=$3; shift 3
    strace -f -c -o "$BENCH_OUT/strace.txt" "$@" >/dev/null 2>&1
    record "$group" "$op" "$side" "$(awk '$NF == "ioctl" {print $4}' "$BENCH_OUT/strace.txt" | head -n 1)" ioctls
    record "$group" "$op" "$side" "$(awk '$NF == "execve" {print $4}' "$BENCH_OUT/strace.txt" | head -n 1)" execs
}
if command -v strace >/dev/null; then
    syscalls "syscalls" create thinsr thinvdi-create bench --name strace1 --size 16M
    syscalls "syscalls" create lvm lvcreate -q -T benchvg/lvmpool -V 16M -n strace1
    syscalls "syscalls" snapshot thinsr thinvdi-snapshot bench strace1 --name strace2
    syscalls "syscalls" snapshot lvm lvcreate -q -s benchvg/strace1 -n strace2
fi
fi  # syscalls

# ---------------------------------------------------------------- data path
if want datapath; then
if command -v fio >/dev/null; then
    T=$(thinvdi-create bench --name fio --size $(( FIO_MIB + 16 ))M)
    PT=$(thinvdi-attach bench "$T")
    # fio_jobs GROUP once|timed NAME:SIDE:DEVICE:RW:BS...: one fio run of those jobs, one after
    # another (stonewall), each job's rate recorded under its name and side (a
    # fio start costs over a second in the UML lab: one per group, not per figure).
    fio_jobs() {
        local group=$1 timing=$2 job name side device rw bs args=() specs=() rates=() i
        shift 2
        for job in "$@"; do
            IFS=: read -r name side device rw bs <<<"$job"
            args+=(--name="$name" --filename="$device" --rw="$rw" --bs="$bs")
            [ ${#specs[@]} = 0 ] || args+=(--stonewall)
            [ "$timing" = timed ] && args+=(--time_based --runtime="$FIO_RUNTIME")
            specs+=("$name:$side")
        done
        # (--output: with several groups fio also prints the first job's line on standard output.)
        fio --direct=1 --ioengine=libaio --iodepth=16 --size="${FIO_MIB}M" "${args[@]}" \
            --output-format=json --output="$BENCH_OUT/fio.json" >/dev/null 2>&1
        mapfile -t rates < <(jq '.jobs[] | [.read.bw_bytes, .write.bw_bytes] | add' "$BENCH_OUT/fio.json")
        for i in "${!specs[@]}"; do
            record "$group" "${specs[i]%:*}" "${specs[i]##*:}" "${rates[i]:-}" bytes_per_second
        done
    }
    # fio_against_linear GROUP SIDE DEVICE: the four timed figures, each beside the plain LV's.
    fio_against_linear() {
        local linear=/dev/benchvg/linear
        fio_jobs "$1" timed "sequential write:$2:$3:write:1M" "sequential write:linear:$linear:write:1M" \
            "sequential read:$2:$3:read:1M" "sequential read:linear:$linear:read:1M" \
            "4K random read:$2:$3:randread:4k" "4K random read:linear:$linear:randread:4k" \
            "4K random write:$2:$3:randwrite:4k" "4K random write:linear:$linear:randwrite:4k"
    }
    fio_jobs "first write (provisioning)" once "sequential write 1M:thin:$PT:write:1M" \
        "sequential write 1M:linear:/dev/benchvg/linear:write:1M"
    fio_against_linear "data path (provisioned)" thin "$PT"
    thinvdi-detach bench "$T"
    # A preallocated raw volume's device (linear over its LV) against the plain LV.
    R=$(thinvdi-create bench --name fio-raw --size $(( FIO_MIB + 16 ))M --preallocate --progress=none)
    PR=$(thinvdi-attach bench "$R")
    fio_against_linear "data path (preallocated raw)" thinsr "$PR"
    thinvdi-detach bench "$R"
    thinvdi-destroy bench "$R"
fi
fi  # datapath

# ---------------------------------------------------------------- backup: export, changed blocks, import
if want backup; then
IMAGES=$BENCH_OUT/images
rm -rf "$IMAGES"; mkdir -p "$IMAGES"
E=$(thinvdi-create bench --name export-src --size ${EXPORT_GIB}G)
EP=$(thinvdi-attach bench "$E")
spread_writes "$EP" "$EXPORT_MIB"
ES=$(thinvdi-snapshot bench "$E" --name export-snap)
ESP=$(thinvdi-attach --read-only bench "$ES")
sample "backup: export ${EXPORT_GIB}G, 1% written, qcow2" "export" thinsr thinvdi-export bench "$ES" "$IMAGES/e.qcow2" --progress=none
sample "backup: export ${EXPORT_GIB}G, 1% written, qcow2" "export" lvm qemu-img convert -f raw -O qcow2 "$ESP" "$IMAGES/whole.qcow2"
qemu-img compare -q "$IMAGES/e.qcow2" "$IMAGES/whole.qcow2" && record "backup: export ${EXPORT_GIB}G, 1% written, qcow2" "outputs identical (qemu-img compare)" thinsr 1 yes
rm -f "$IMAGES/whole.qcow2"
changed_pair() { # changed_pair SIZE: a volume, a snapshot, CHANGED_MIB changed, a second snapshot
    local v p
    v=$(thinvdi-create bench --name "cb$1" --size "$1")
    p=$(thinvdi-attach bench "$v")
    spread_writes "$p" 64
    thinvdi-snapshot bench "$v" --name "cb$1-a" >/dev/null
    spread_writes "$p" "$CHANGED_MIB"
    thinvdi-snapshot bench "$v" --name "cb$1-b" >/dev/null
    thinvdi-detach bench "$v"
}
changed_pair "$CHANGED_SMALL"; changed_pair "$CHANGED_BIG"
for _ in $(seq "$RUNS"); do
    sample "backup: changed blocks, ${CHANGED_MIB}M changed" "${CHANGED_SMALL} volume (thinsr) vs ${CHANGED_BIG} (lvm column)" thinsr \
        thinvdi-changed bench "cb$CHANGED_SMALL-a" "cb$CHANGED_SMALL-b" --json
    sample "backup: changed blocks, ${CHANGED_MIB}M changed" "${CHANGED_SMALL} volume (thinsr) vs ${CHANGED_BIG} (lvm column)" lvm \
        thinvdi-changed bench "cb$CHANGED_BIG-a" "cb$CHANGED_BIG-b" --json
done
A=$(thinvdi-attach --read-only bench "cb$CHANGED_SMALL-a"); B=$(thinvdi-attach --read-only bench "cb$CHANGED_SMALL-b")
sample "backup: changed blocks vs reading both devices (${CHANGED_SMALL})" "from metadata (thinsr) vs reading both devices (lvm column)" thinsr \
    thinvdi-changed bench "cb$CHANGED_SMALL-a" "cb$CHANGED_SMALL-b" --json
sample "backup: changed blocks vs reading both devices (${CHANGED_SMALL})" "from metadata (thinsr) vs reading both devices (lvm column)" lvm \
    python3 -c "
import sys
a, b = open('$A', 'rb', buffering=0), open('$B', 'rb', buffering=0)
block = changed = 0
while True:
    x, y = a.read(1 << 20), b.read(1 << 20)
    if not x:
        break
    changed += sum(x[i:i + 65536] != y[i:i + 65536] for i in range(0, len(x), 65536))
print(changed)"
thinvdi-detach bench "cb$CHANGED_SMALL-a"; thinvdi-detach bench "cb$CHANGED_SMALL-b"
truncate -s ${EXPORT_GIB}G "$IMAGES/src.raw"
spread_writes "$IMAGES/src.raw" "$EXPORT_MIB"
qemu-img convert -f raw -O qcow2 "$IMAGES/src.raw" "$IMAGES/src.qcow2" && rm -f "$IMAGES/src.raw"
before=$(dmsetup status "thinsr_$(echo "$SR" | tr -d -)_pool" | awk '{split($6, d, "/"); print d[1]}')
sample "backup: import 1%-allocated qcow2 of ${EXPORT_GIB}G" "import" thinsr thinvdi-import bench --name imported "$IMAGES/src.qcow2" --progress=none
after=$(dmsetup status "thinsr_$(echo "$SR" | tr -d -)_pool" | awk '{split($6, d, "/"); print d[1]}')
lvcreate -q -T benchvg/lvmpool -V ${EXPORT_GIB}G -n imported >/dev/null
sample "backup: import 1%-allocated qcow2 of ${EXPORT_GIB}G" "import" lvm qemu-img convert -n --target-is-zero -f qcow2 "$IMAGES/src.qcow2" -O raw /dev/benchvg/imported
record "backup: import 1%-allocated qcow2 of ${EXPORT_GIB}G" "pool data used" thinsr $(( (after - before) * 64 )) KiB
record "backup: import 1%-allocated qcow2 of ${EXPORT_GIB}G" "pool data used" lvm \
    "$(lvs --noheadings --units k --nosuffix -o data_percent,lv_size benchvg/imported | awk '{printf "%d", $1 * $2 / 100}')" KiB
lvremove -q -y benchvg/imported >/dev/null
rm -rf "$IMAGES"
fi  # backup

# ---------------------------------------------------------------- space: zeroing, the pool monitor
if want space; then
lvcreate -q -y -n zerodd -L ${ZERO_MIB}M benchvg >/dev/null
zero_bytes=$(( ZERO_MIB << 20 ))
rate_of() { echo $(( zero_bytes * 1000000 / ($2 - $1) )); }   # rate_of START_US END_US
for i in $(seq "$ZERO_RUNS"); do
    # thinsr's zeroing rate is its own progress report's, at the moment the zeroing ended (LV creation excluded).
    thinvdi-create bench --name "zero$i" --size ${ZERO_MIB}M --preallocate --progress=json >/dev/null 2> "$BENCH_OUT/zero.progress"
    rate=$(jq -s '[.[] | select(.done == .total)][0].rate' "$BENCH_OUT/zero.progress")
    thinvdi-destroy bench "zero$i"
    record "space: zeroing rate, ${ZERO_MIB}M" "preallocate vs dd oflag=direct" thinsr "$rate" bytes_per_second
    record "space: zeroing rate, ${ZERO_MIB}M" "the same vs blkdiscard -z" thinsr "$rate" bytes_per_second
    start=$(now_us); dd if=/dev/zero of=/dev/benchvg/zerodd bs=1M count=$ZERO_MIB oflag=direct conv=fsync status=none
    record "space: zeroing rate, ${ZERO_MIB}M" "preallocate vs dd oflag=direct" linear "$(rate_of "$start" "$(now_us)")" bytes_per_second
    start=$(now_us); blkdiscard -z /dev/benchvg/zerodd
    record "space: zeroing rate, ${ZERO_MIB}M" "the same vs blkdiscard -z" linear "$(rate_of "$start" "$(now_us)")" bytes_per_second
    sample "space: create --preallocate ${ZERO_MIB}M" "the whole command (lvcreate, zeroing, catalog)" thinsr \
        thinvdi-create bench --name "zero$i" --size ${ZERO_MIB}M --preallocate --progress=none
    thinvdi-destroy bench "zero$i"
done
lvremove -q -y benchvg/zerodd >/dev/null
# The monitor under a writer at full speed: a pool of MON_POOL_MIB, grown at
# 70% by its size, takes MON_WRITE_MIB. A watcher samples the pool's status
# (one dmsetup call per sample: its cost is the figure's resolution);
# reaction = the first sample past the threshold to the first with more data.
MSR=$(thinsr-create --name benchmon --vg benchvg --pool-size ${MON_POOL_MIB}M)
thinsr-set benchmon --autoextend-threshold 70 --autoextend-step ${MON_POOL_MIB}M
MV=$(thinvdi-create benchmon --name writer --size $(( MON_WRITE_MIB + 64 ))M)
MP=$(thinvdi-attach benchmon "$MV")
mkdir -p "$BENCH_OUT/metrics"
THINSR_METRICS_DIR=$BENCH_OUT/metrics thinsr-monitor --interval 1 2> "$BENCH_OUT/monitor.log" &
monitor=$!
for _ in $(seq 300); do [ "$(cat /run/thinsr/monitor.pid 2>/dev/null)" = "$monitor" ] && break; sleep 0.1; done
mpool=thinsr_$(echo "$MSR" | tr -d -)_pool
( while [ ! -e "$BENCH_OUT/writer.done" ]; do
      echo "$(now_us) $(dmsetup status "$mpool" | awk '{print $6}')"
      sleep 0.02
  done ) > "$BENCH_OUT/pool-trace" &
watcher=$!
rm -f "$BENCH_OUT/writer.done"
fio --name=writer --filename="$MP" --rw=write --bs=1M --direct=1 --ioengine=libaio --iodepth=4 \
    --size="${MON_WRITE_MIB}M" --output-format=json > "$BENCH_OUT/fio-monitor.json" 2>/dev/null
writer_status=$?
touch "$BENCH_OUT/writer.done"; wait $watcher
kill -TERM $monitor; wait $monitor
record "space: monitor, writer at full speed" "write errors (fio)" thinsr \
    "$( [ $writer_status = 0 ] && jq '.jobs[0].error' "$BENCH_OUT/fio-monitor.json" || echo 1)" count
record "space: monitor, writer at full speed" "longest write (fio clat max)" thinsr \
    "$(jq '.jobs[0].write.clat_ns.max / 1000 | floor' "$BENCH_OUT/fio-monitor.json")" ""
record "space: monitor, writer at full speed" "writer rate" thinsr "$(jq '.jobs[0].write.bw_bytes' "$BENCH_OUT/fio-monitor.json")" bytes_per_second
awk '{ split($2, d, "/"); used = d[1]; total = d[2]
       if (total > last_total && crossed) { print $1 - crossed; crossed = 0 }
       if (total > last_total) last_total = total
       if (!crossed && used >= total * 0.7) crossed = $1 }' "$BENCH_OUT/pool-trace" |
    while read -r reaction; do record "space: monitor, writer at full speed" "threshold crossed to pool grown" thinsr "$reaction" ""; done
record "space: monitor, writer at full speed" "pool growths" thinsr "$(grep -c ': grew data by' "$BENCH_OUT/monitor.log")" count
thinvdi-detach benchmon "$MV"
thinsr-detach benchmon && thinsr-destroy --force benchmon
fi  # space

# ---------------------------------------------------------------- templates
if want templates; then
# Two qcow2 images with the same TPL_DATA_MIB of data at their start: TPL_SMALL
# and TPL_BIG. "Ready" = introduce + clone + attach + the first 1 MiB
# read, against creating a volume and copying the image into it first
# (qemu-img convert onto the fresh, zero-reading thin volume).
TIMG=$THINSR_SCRATCH/bench-images; mkdir -p "$TIMG"
head -c $((TPL_DATA_MIB << 20)) < <(openssl enc -aes-128-ctr -nosalt -pass pass:tpl -in /dev/zero 2>/dev/null) > "$TIMG/data"
for size in "$TPL_SMALL" "$TPL_BIG"; do   # sparse raw of that size, the data at its start, made qcow2 (holes stay holes)
    cp "$TIMG/data" "$TIMG/t$size.raw" && truncate -s "$size" "$TIMG/t$size.raw"
    qemu-img convert -f raw -O qcow2 "$TIMG/t$size.raw" "$TIMG/t$size.qcow2" && rm -f "$TIMG/t$size.raw"
done
ready() { # ready SIZE RUN: introduce, clone, attach, read 1 MiB
    thinvdi-introduce bench "file://$TIMG/t$1.qcow2" --name "tpl$1-$2" >/dev/null &&
    thinvdi-clone bench "tpl$1-$2" --name "tc$1-$2" >/dev/null &&
    dd if="$(thinvdi-attach bench "tc$1-$2")" of=/dev/null bs=1M count=1 iflag=direct status=none
}
copied() { # copied SIZE RUN: create, qemu-img convert into it, read 1 MiB
    local dev
    thinvdi-create bench --name "cp$1-$2" --size "$1" >/dev/null && dev=$(thinvdi-attach bench "cp$1-$2") &&
    qemu-img convert -q -n --target-is-zero -f qcow2 -O raw "$TIMG/t$1.qcow2" "$dev" &&
    dd if="$dev" of=/dev/null bs=1M count=1 iflag=direct status=none
}
for i in $(seq "$TPL_RUNS"); do
    sample "templates: ready to read" "$TPL_BIG image (left) vs $TPL_SMALL image" thinsr ready "$TPL_BIG" "$i"
    sample "templates: ready to read" "$TPL_BIG image (left) vs $TPL_SMALL image" reference ready "$TPL_SMALL" "$i"
    sample "templates: ready to read" "$TPL_BIG clone vs copying it in first" thinsr ready "$TPL_BIG" "x$i"
    sample "templates: ready to read" "$TPL_BIG clone vs copying it in first" linear copied "$TPL_BIG" "$i"
    for key in "tc$TPL_BIG-$i" "tc$TPL_SMALL-$i" "tc$TPL_BIG-x$i" "cp$TPL_BIG-$i"; do
        thinvdi-detach bench "$key"; thinvdi-destroy bench "$key"
    done
    for key in "tpl$TPL_BIG-$i" "tpl$TPL_SMALL-$i" "tpl$TPL_BIG-x$i"; do thinvdi-forget bench "$key"; done
done
# Reading template data: the first read goes through the origin (qemu-nbd);
# after thinvdi-hydrate the same read is the pool's, compared with a thin
# volume holding the same data written directly.
read_rate() { # read_rate DEVICE [MIB]: fio sequential 1 MiB direct reads of the data (or its first MIB), bytes/s
    fio --name=read --filename="$1" --rw=read --bs=1M --direct=1 --ioengine=libaio --iodepth=4 \
        --size="${2:-$TPL_DATA_MIB}M" --output-format=json 2>/dev/null | jq '.jobs[0].read.bw_bytes'
}
timed_read_rate() { # timed_read_rate DEVICE [MIB]: as read_rate, over and over for TPL_READ_SECONDS (0: once)
    [ "$TPL_READ_SECONDS" = 0 ] && { read_rate "$@"; return; }
    fio --name=read --filename="$1" --rw=read --bs=1M --direct=1 --ioengine=libaio --iodepth=4 \
        --size="${2:-$TPL_DATA_MIB}M" --time_based --runtime="$TPL_READ_SECONDS" --output-format=json 2>/dev/null |
        jq '.jobs[0].read.bw_bytes'
}
paired_rates() { # paired_rates DEVICE REFERENCE [MIB]: each read PAIRED_READS times (five; the smoke run once), alternately; the two medians
    local a=() b=() _ middle=$(( (PAIRED_READS + 1) / 2 ))
    for _ in $(seq "$PAIRED_READS"); do a+=("$(timed_read_rate "$1" "${3:-}")"); b+=("$(timed_read_rate "$2" "${3:-}")"); done
    printf '%s %s\n' "$(printf '%s\n' "${a[@]}" | sort -n | sed -n ${middle}p)" "$(printf '%s\n' "${b[@]}" | sort -n | sed -n ${middle}p)"
}
hydrated_regions() { dmsetup status "$1" 2>/dev/null | awk '{split($7, r, "/"); print r[1]}'; }
thinvdi-introduce bench "file://$TIMG/t$TPL_SMALL.qcow2" --name tplread >/dev/null
thinvdi-create bench --name tplref --size "$TPL_SMALL" >/dev/null
REF=$(thinvdi-attach bench tplref)
dd if="$TIMG/data" of="$REF" bs=1M oflag=direct conv=fsync status=none
for i in $(seq "$TPL_RUNS"); do
    thinvdi-clone bench tplread --name "tr$i" >/dev/null
    TRP=$(thinvdi-attach bench "tr$i")
    first=$(read_rate "$TRP")
    sample "templates: hydrate" "$TPL_SMALL clone, ${TPL_DATA_MIB}M of data (the rest zeros)" thinsr \
        thinvdi-hydrate bench "tr$i" --progress=none
    read -r second reference < <(paired_rates "$TRP" "$REF")
    record "templates: reading template data" "first read (origin) vs after hydrate" thinsr "$first" bytes_per_second
    record "templates: reading template data" "first read (origin) vs after hydrate" reference "$second" bytes_per_second
    record "templates: reading template data" "after hydrate vs a thin volume" thinsr "$second" bytes_per_second
    record "templates: reading template data" "after hydrate vs a thin volume" reference "$reference" bytes_per_second
    thinvdi-detach bench "tr$i"; thinvdi-destroy bench "tr$i"
    # Without dm-clone (XCP-ng 8.3's 4.19 kernel) a detached clone hydrates offline:
    # against dm-clone's hydration of a detached clone of the same template.
    thinvdi-clone bench tplread --name "hd$i" >/dev/null
    sample "templates: hydrate" "detached $TPL_SMALL clone, ${TPL_DATA_MIB}M of data: offline vs dm-clone" reference \
        thinvdi-hydrate bench "hd$i" --progress=none
    thinvdi-destroy bench "hd$i"
    thinvdi-clone bench tplread --name "ho$i" >/dev/null
    if rmmod dm_clone 2>/dev/null; then
        sample "templates: hydrate" "detached $TPL_SMALL clone, ${TPL_DATA_MIB}M of data: offline vs dm-clone" thinsr \
            thinvdi-hydrate bench "ho$i" --progress=none
        modprobe -d /run/lab-modules dm_clone 2>/dev/null || modprobe dm_clone
    else
        echo "bench: dm_clone could not be unloaded; no offline hydration figure" >&2
    fi
    thinvdi-destroy bench "ho$i"
    # Copy-on-read: half the data read once with thinvdi-hydrate --on-read
    # running, then, once its copies settle, read again (through dm-clone).
    half=$((TPL_DATA_MIB / 2))
    thinvdi-clone bench tplread --name "cr$i" >/dev/null
    CRP=$(thinvdi-attach bench "cr$i")
    thinvdi-hydrate bench "cr$i" --on-read --progress=none >/dev/null 2>&1 & cor=$!
    # Reads count once both of its dm-stats regions are on dm-clone's source (the only one in this SR now).
    HC=
    for _ in $(seq 100); do
        HC=$(dmsetup ls | awk '/_hc/ {print $1; exit}')
        [ -n "$HC" ] && [ "$(dmsetup message "${HC/_hc/_hs}" 0 @stats_list 2>/dev/null | grep -c +)" = 2 ] && break
        sleep 0.1
    done
    first=$(read_rate "$CRP" "$half")
    last=-1; for _ in $(seq 120); do now=$(hydrated_regions "$HC"); [ "$now" = "$last" ] && break; last=$now; sleep 1; done
    read -r second reference < <(paired_rates "$CRP" "$REF" "$half")
    kill -TERM "$cor"; wait "$cor"
    record "templates: copy-on-read" "first read (origin) vs second read" thinsr "$first" bytes_per_second
    record "templates: copy-on-read" "first read (origin) vs second read" reference "$second" bytes_per_second
    record "templates: copy-on-read" "second read vs a thin volume" thinsr "$second" bytes_per_second
    record "templates: copy-on-read" "second read vs a thin volume" reference "$reference" bytes_per_second
    thinvdi-detach bench "cr$i"; thinvdi-destroy bench "cr$i"
done
thinvdi-detach bench tplref; thinvdi-destroy bench tplref; thinvdi-forget bench tplread
rm -rf "$TIMG"
fi  # templates

# ---------------------------------------------------------------- motion
if want motion; then
serve_target() { # serve_target VOLUME: a writable NBD server of VOLUME on $MOT_SOCK
    rm -f "$MOT_SOCK"
    thinvdi-serve bench "$1" --socket "$MOT_SOCK" --writable >/dev/null 2>&1 & MOT_SERVER=$!
    for _ in $(seq 100); do [ -S "$MOT_SOCK" ] && return; sleep 0.1; done
}
MOT_SOCK=$BENCH_OUT/motion.sock
for size in "$MOT_BIG_MIB" "$MOT_SMALL_MIB"; do
    thinvdi-create bench --name "mot$size" --size "${size}M" >/dev/null
    spread_writes "$(thinvdi-attach bench "mot$size")" "$MOT_DATA_MIB"
    thinvdi-detach bench "mot$size"
done
for i in $(seq "$RUNS"); do
    for size in "$MOT_BIG_MIB" "$MOT_SMALL_MIB"; do
        thinvdi-create bench --name "dst$size-$i" --size "${size}M" >/dev/null
        serve_target "dst$size-$i"
        side=reference; [ "$size" = "$MOT_BIG_MIB" ] && side=thinsr
        sample "motion: mirror converges" "${MOT_BIG_MIB}M vs ${MOT_SMALL_MIB}M volume, ${MOT_DATA_MIB}M of data each" "$side" \
            thinvdi-mirror bench "mot$size" "nbd+unix:///dst$size-$i?socket=$MOT_SOCK" --progress=none
        kill -TERM "$MOT_SERVER"; wait "$MOT_SERVER"
        thinvdi-destroy bench "dst$size-$i"
    done
    thinvdi-create bench --name "full-$i" --size "${MOT_SMALL_MIB}M" >/dev/null
    serve_target "full-$i"
    sample "motion: only data crosses" "${MOT_SMALL_MIB}M volume, ${MOT_DATA_MIB}M of data: its data vs every region (--full)" thinsr \
        thinvdi-mirror bench "mot$MOT_SMALL_MIB" "nbd+unix:///full-$i?socket=$MOT_SOCK" --progress=none
    kill -TERM "$MOT_SERVER"; wait "$MOT_SERVER"
    thinvdi-destroy bench "full-$i"
    thinvdi-create bench --name "full-$i" --size "${MOT_SMALL_MIB}M" >/dev/null
    serve_target "full-$i"
    sample "motion: only data crosses" "${MOT_SMALL_MIB}M volume, ${MOT_DATA_MIB}M of data: its data vs every region (--full)" reference \
        thinvdi-mirror bench "mot$MOT_SMALL_MIB" "nbd+unix:///full-$i?socket=$MOT_SOCK" --full --progress=none
    kill -TERM "$MOT_SERVER"; wait "$MOT_SERVER"
    thinvdi-destroy bench "full-$i"
done
# The guest's writes while the mirror runs in sync, against the same volume unmirrored.
if command -v fio >/dev/null; then
    W=$(thinvdi-create bench --name motw --size $(( FIO_MIB + 16 ))M)
    thinvdi-create bench --name motwd --size $(( FIO_MIB + 16 ))M >/dev/null
    PW=$(thinvdi-attach --holder vm bench "$W")
    dd if=/dev/zero of="$PW" bs=1M count="$FIO_MIB" oflag=direct status=none   # provisioned: only the mirror differs
    serve_target motwd
    mot_rate() { fio --name=w --filename="$PW" --rw=randwrite --bs=4k --direct=1 --ioengine=libaio --iodepth=16 \
        --size="${FIO_MIB}M" --time_based --runtime="$FIO_RUNTIME" --output-format=json 2>/dev/null | jq '.jobs[0].write.bw_bytes'; }
    record "motion: guest writes" "4K random writes: mirrored vs not" reference "$(mot_rate)" bytes_per_second
    thinvdi-mirror bench "$W" "nbd+unix:///motwd?socket=$MOT_SOCK" --domain vm --progress=none >/dev/null
    record "motion: guest writes" "4K random writes: mirrored vs not" thinsr "$(mot_rate)" bytes_per_second
    thinvdi-detach --holder vm bench "$W"
    kill -TERM "$MOT_SERVER"; wait "$MOT_SERVER"
    thinvdi-destroy bench "$W"; thinvdi-destroy bench motwd
fi
thinvdi-destroy bench "mot$MOT_BIG_MIB"; thinvdi-destroy bench "mot$MOT_SMALL_MIB"
fi  # motion

# ---------------------------------------------------------------- clean up
for key in $(thinvdi-ls --json bench | jq -r '.[] | select(.attached) | .key'); do thinvdi-detach bench "$key"; done
thinsr-detach bench && thinsr-destroy --force bench
vgchange -q -an benchvg >/dev/null; vgremove -q -y benchvg >/dev/null
pvremove -q -y "$BENCH_DEV" >/dev/null 2>&1; free_loop "$BENCH_DEV"
python3 "$(dirname "$0")/report.py" "$SAMPLES" "$BENCH_OUT/results.json" "$MODE"
