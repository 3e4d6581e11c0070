# The benchmark harness, in its smoke size, so it never rots (sourced by suite.sh).

test_begin "benchmark harness (smoke)"
BENCH_OUT=$THINSR_SCRATCH/bench bash bench/run.sh --smoke > "$THINSR_SCRATCH/bench.out" 2>&1
bench_status=$?
tail -n 40 "$THINSR_SCRATCH/bench.out"
check_eq "bench/run.sh --smoke exits 0" 0 "$bench_status"
results=$THINSR_SCRATCH/bench/results.json
for op in create snapshot clone attach revert destroy; do
    check_eq "a thinsr/LVM ratio for $op at 10 volumes" true \
        "$(jq "[.results[] | select(.group == \"at 10 volumes\" and .operation == \"$op\") | .ratio.value > 0] | any" "$results" 2>/dev/null)"
done
check_eq "thin vs linear data path figures" true \
    "$(jq '[.results[] | select(.group == "data path (provisioned)") | select(.ratio.value > 0)] | length == 4' "$results" 2>/dev/null)"
check_eq "ioctl counts for thinsr" true \
    "$(jq '[.results[] | select(.group == "syscalls") | .sides.thinsr.ioctls.median > 0] | all' "$results" 2>/dev/null)"
check_eq "export, changed-block and import figures, each against its comparison" true \
    "$(jq '[.results[] | select(.group | startswith("backup:")) | select(.sides.thinsr.wall_microseconds and .sides.lvm.wall_microseconds)] | length == 4' "$results" 2>/dev/null)"
check_eq "the export's output is identical to qemu-img convert's of the whole device" true \
    "$(jq '[.results[] | select(.operation == "outputs identical (qemu-img compare)")] | length == 1' "$results" 2>/dev/null)"
check_eq "preallocated raw vs plain LV data path figures" true \
    "$(jq '[.results[] | select(.group == "data path (preallocated raw)") | select(.ratio.value > 0)] | length == 4' "$results" 2>/dev/null)"
check_eq "zeroing a preallocated volume, against dd and blkdiscard -z" true \
    "$(jq '[.results[] | select(.group | startswith("space: zeroing rate")) | select(.ratio.value > 0)] | length == 2' "$results" 2>/dev/null)"
check_eq "the monitor grew the pool under a writer that saw no error, with its reaction time and longest write" true \
    "$(jq '[.results[] | select(.group == "space: monitor, writer at full speed") | {(.operation): .sides.thinsr}] | add
           | .["write errors (fio)"].count.median == 0 and .["pool growths"].count.median >= 1
             and .["threshold crossed to pool grown"].wall_microseconds.median > 0
             and .["longest write (fio clat max)"].wall_microseconds.median > 0' "$results" 2>/dev/null)"
check_eq "templates: ready-to-read against a smaller image and against copying it in, each a ratio" true \
    "$(jq '[.results[] | select(.group == "templates: ready to read") | select(.ratio.value > 0)] | length == 2' "$results" 2>/dev/null)"
check_eq "templates: reads through the origin, after hydration and from a thin volume, each a ratio" true \
    "$(jq '[.results[] | select(.group == "templates: reading template data") | select(.ratio.value > 0)] | length == 2' "$results" 2>/dev/null)"
check_eq "templates: copy-on-read's first and second reads and a thin volume's, each a ratio" true \
    "$(jq '[.results[] | select(.group == "templates: copy-on-read") | select(.ratio.value > 0)] | length == 2' "$results" 2>/dev/null)"
check "the table was printed" grep -q "ratio" "$THINSR_SCRATCH/bench.out"
