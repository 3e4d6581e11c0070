# Concurrency: 8 clients x 50 mixed operations on one be-nice SR (beside the
# user's LV from the hostile part). Each call succeeds or fails cleanly (a
# documented status other than 1, one line on stderr); afterwards the catalog
# and the pool agree and thin_check is clean. Readers answer while the SR lock
# is held.

test_begin "8 clients x 50 mixed operations on one SR"
CSR=$HSR
thinvdi-detach hostile "$HV"
CLIENT_OPS=50
CDB=/run/thinsr/$CSR/catalog/catalog.db
pick() { # pick WHERE: a random volume key from the catalog (a reader waits out a writer's checkpoint, as the tools do)
    sqlite3 -cmd ".timeout 30000" "file:$CDB?mode=ro" "SELECT key FROM volume WHERE $1 ORDER BY random() LIMIT 1" 2>/dev/null
}
client() { # client N: writes one line per operation: "<op> <status> <stderr lines>"
    local n=$1 i op key mine=() status
    RANDOM=$((n * 7919))
    for i in $(seq "$CLIENT_OPS"); do
        all=$(pick "state = 'ready'")
        case $((RANDOM % 8)) in
            0) op=create; thinvdi-create hostile --name "c$n-$i" --size 4M ;;
            1) op=snapshot; thinvdi-snapshot hostile "${all:-none}" --name "s$n-$i" ;;
            2) op=clone; thinvdi-clone hostile "${all:-none}" --name "k$n-$i" ;;
            3) op=destroy; thinvdi-destroy hostile "${all:-none}" ;;
            4) op=revert; thinvdi-revert hostile "${all:-none}" "$(pick "kind = 'snapshot' AND state = 'ready'")" ;;
            5) op=set; thinvdi-set hostile "${all:-none}" --name "renamed by $n" "client=$n" ;;
            6) op=stat; thinvdi-stat hostile "${all:-none}" ;;
            7) op=ls; thinvdi-ls hostile ;;
        esac >/dev/null 2>"$THINSR_LAB/client-$n.err"
        status=$?
        echo "$op $status $(wc -l < "$THINSR_LAB/client-$n.err") $(head -c 150 "$THINSR_LAB/client-$n.err" | tr '\n' ' ')"
    done > "$THINSR_LAB/client-$n.log"
}
before_user=$(user_digest)
for n in $(seq 8); do client "$n" & done
wait
cat "$THINSR_LAB"/client-*.log > "$THINSR_LAB/clients.log"
total=$(wc -l < "$THINSR_LAB/clients.log")
ok=$(awk '$2 == 0' "$THINSR_LAB/clients.log" | wc -l)
clean=$(awk '$2 != 0 && $2 != 1 && $3 == 1' "$THINSR_LAB/clients.log" | wc -l)
echo "concurrency: $total operations, $ok succeeded, $clean refused cleanly"
awk '{print $1, ($2 == 0 ? "ok" : "refused")}' "$THINSR_LAB/clients.log" | sort | uniq -c | sed 's/^/     /'
check_eq "400 operations ran" 400 "$total"
check_eq "every operation succeeded or failed cleanly" "$total" "$((ok + clean))"
awk '!($2 == 0 || ($2 != 1 && $3 == 1))' "$THINSR_LAB/clients.log" | head -5 | sed 's/^/     | /'
check "mutating operations did succeed" test "$(awk '$1 != "stat" && $1 != "ls" && $2 == 0' "$THINSR_LAB/clients.log" | wc -l)" -gt 50
check "thinsr-check clean after the storm" thinsr-check hostile
check_pool_agrees "$CSR" "after 8 concurrent clients"
check_eq "the user's LV untouched (lvs + contents)" "$before_user" "$(user_digest)"

test_begin "readers stay responsive while a long operation holds the SR lock"
STEADY=$(thinvdi-create hostile --name steady --size 4M)   # the storm may have destroyed any earlier volume
flock "/run/thinsr/$CSR/catalog/lock" sleep 60 &
holder=$!
sleep 1
check "thinvdi-ls answers under the lock" timeout 30 thinvdi-ls hostile
check "thinsr-stat answers under the lock" timeout 30 thinsr-stat hostile
check "thinvdi-stat answers under the lock" timeout 30 thinvdi-stat hostile "$STEADY"
timeout 3 thinvdi-create hostile --name blocked --size 4M >/dev/null 2>&1
check_eq "a writer waits for the lock (killed by timeout)" 124 "$?"
kill "$holder"; wait "$holder" 2>/dev/null
check "the writer proceeds once the lock is free" thinvdi-create hostile --name unblocked --size 4M

check "thinsr-detach --force" thinsr-detach --force hostile
check "thinsr-destroy --force" thinsr-destroy --force hostile
check_eq "only the user's LV is left" "precious" "$(lvs --noheadings -o lv_name uservg | tr -d ' ')"
check_eq "the user's LV is as it was before any test" "$USER_BEFORE" "$(user_digest)"
