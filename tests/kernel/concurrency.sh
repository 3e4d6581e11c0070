# Concurrency: 8 clients x 25 mixed operations on one be-nice SR beside a
# user's LV. Each call succeeds or fails cleanly (a documented status other
# than 1, one line on stderr); afterwards the catalog and the pool agree and
# thin_check is clean. Readers answer while the SR lock is held.

test_begin "8 clients x 25 mixed operations on one SR"
new_loop CD1 512
pvcreate -q "$CD1" >/dev/null && vgcreate -q stormvg "$CD1" >/dev/null
lvcreate -q -y -n bystander -L 32M stormvg >/dev/null
write_pattern /dev/stormvg/bystander storm-user 32
storm_user_digest() { { lvs --noheadings -o lv_name,lv_size,lv_attr,lv_tags,devices stormvg | grep -v thinsr_; sha256sum < /dev/stormvg/bystander; } | sha256sum; }
STORM_USER_BEFORE=$(storm_user_digest)
CSR=$(thinsr-create --name storm --vg stormvg --pool-size 256M)
for n in 1 2 3; do thinvdi-create storm --name "seed $n" --size 8M >/dev/null; done
thinvdi-snapshot storm seed1 --name seed-snap >/dev/null
STORM_USER_WITH_SR=$(storm_user_digest)     # lvs pads its columns to the SR's longer LV names
CLIENT_OPS=25
CDB=/run/thinsr/$CSR/catalog/catalog.db
pick() { # pick WHERE: a random volume key from the catalog (a reader waits out a writer's checkpoint, as the tools do)
    sqlite3 -cmd ".timeout 30000" "file:$CDB?mode=ro" "SELECT key FROM volume WHERE $1 ORDER BY random() LIMIT 1" 2>/dev/null
}
client() { # client N: writes one line per operation: "<op> <status> <stderr lines>"
    local n=$1 i op key mine=() status errors
    RANDOM=$((n * 7919))
    for i in $(seq "$CLIENT_OPS"); do
        local choice=$((RANDOM % 8))
        case $choice in 1|2|3|4|5|6) all=$(pick "state = 'ready'") ;; esac
        case $choice in
            0) op=create; thinvdi-create storm --name "c$n-$i" --size 4M ;;
            1) op=snapshot; thinvdi-snapshot storm "${all:-none}" --name "s$n-$i" ;;
            2) op=clone; thinvdi-clone storm "${all:-none}" --name "k$n-$i" ;;
            3) op=destroy; thinvdi-destroy storm "${all:-none}" ;;
            4) op=revert; thinvdi-revert storm "${all:-none}" "$(pick "kind = 'snapshot' AND state = 'ready'")" ;;
            5) op=set; thinvdi-set storm "${all:-none}" --name "renamed by $n" "client=$n" ;;
            6) op=stat; thinvdi-stat storm "${all:-none}" ;;
            7) op=ls; thinvdi-ls storm ;;
        esac >/dev/null 2>"$THINSR_SCRATCH/client-$n.err"
        status=$?
        mapfile -t errors <"$THINSR_SCRATCH/client-$n.err"       # builtins only: a process costs 50-100 ms here
        echo "$op $status ${#errors[@]} ${errors[*]:0:2}"
    done > "$THINSR_SCRATCH/client-$n.log"
}

for n in $(seq 8); do client "$n" & done
wait
cat "$THINSR_SCRATCH"/client-*.log > "$THINSR_SCRATCH/clients.log"
total=$(wc -l < "$THINSR_SCRATCH/clients.log")
ok=$(awk '$2 == 0' "$THINSR_SCRATCH/clients.log" | wc -l)
clean=$(awk '$2 != 0 && $2 != 1 && $3 == 1' "$THINSR_SCRATCH/clients.log" | wc -l)
echo "concurrency: $total operations, $ok succeeded, $clean refused cleanly"
awk '{print $1, ($2 == 0 ? "ok" : "refused")}' "$THINSR_SCRATCH/clients.log" | sort | uniq -c | sed 's/^/     /'
check_eq "$((8 * CLIENT_OPS)) operations ran" "$((8 * CLIENT_OPS))" "$total"
check_eq "every operation succeeded or failed cleanly" "$total" "$((ok + clean))"
awk '!($2 == 0 || ($2 != 1 && $3 == 1))' "$THINSR_SCRATCH/clients.log" | head -5 | sed 's/^/     | /'
check "mutating operations did succeed" test "$(awk '$1 != "stat" && $1 != "ls" && $2 == 0' "$THINSR_SCRATCH/clients.log" | wc -l)" -gt 25
check "thinsr-check clean after the storm" thinsr-check storm
check_pool_agrees "$CSR" "after 8 concurrent clients"
check_eq "the user's LV untouched (lvs + contents)" "$STORM_USER_WITH_SR" "$(storm_user_digest)"

test_begin "readers stay responsive while a long operation holds the SR lock"
STEADY=$(thinvdi-create storm --name steady --size 4M)   # the storm may have destroyed any earlier volume
# The holder takes the lock and becomes the sleep that keeps it: killing it
# frees the lock at once (a flock(1) killed alone leaves its sleep holding it).
( flock 8 && exec sleep 60 ) 8>>"/run/thinsr/locks/$CSR" &
holder=$!
sleep 1
check "thinvdi-ls answers under the lock" timeout 30 thinvdi-ls storm
check "thinsr-stat answers under the lock" timeout 30 thinsr-stat storm
check "thinvdi-stat answers under the lock" timeout 30 thinvdi-stat storm "$STEADY"
timeout 3 thinvdi-create storm --name blocked --size 4M >/dev/null 2>&1
check_eq "a writer waits for the lock (killed by timeout)" 124 "$?"
kill "$holder"; wait "$holder" 2>/dev/null
check "the writer proceeds once the lock is free" thinvdi-create storm --name unblocked --size 4M

check "thinsr-detach --force" thinsr-detach --force storm
check "thinsr-destroy --force" thinsr-destroy --force storm
check_eq "only the user's LV is left" "bystander" "$(lvs --noheadings -o lv_name stormvg | tr -d ' ')"
check_eq "the user's LV is as it was before the storm" "$STORM_USER_BEFORE" "$(storm_user_digest)"
