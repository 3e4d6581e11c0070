# Snapshots, clones, revert, resize, metadata and the lineage tree (sourced by suite.sh).

new_loop L1 1024
LSR=$(thinsr-create --name lineage --device "$L1")
attach() { thinvdi-attach lineage "$@"; }
is_readonly() { [ "$(blockdev --getro "$1")" = 1 ]; }

# ---------------------------------------------------------------- the matrix
test_begin "snapshot and clone of anything, at any depth"
V=$(thinvdi-create lineage --name origin --description "the origin" --size 64M)
thinvdi-set lineage "$V" vdi-type=user >/dev/null
PV=$(attach "$V"); write_pattern "$PV" mA 16
S1=$(thinvdi-snapshot lineage "$V" --name s1)                # snapshot of an attached writable volume
write_pattern "$PV" mB 16
S2=$(thinvdi-snapshot lineage "$S1")                         # snapshot of a snapshot
C1=$(thinvdi-clone lineage "$S1" --name c1)                  # clone of a snapshot
PC1=$(attach "$C1"); write_pattern "$PC1" mC 16
C2=$(thinvdi-clone lineage "$C1" --name c2)                  # clone of a clone
C3=$(thinvdi-clone lineage "$V" --name c3)                   # clone of a writable volume
S3=$(thinvdi-snapshot lineage "$C1" --name s3)               # snapshot of a clone
write_pattern "$PC1" mD 16                                   # after S3 and C2: they must not see it
for pair in "$S1 mA" "$S2 mA" "$C1 mD" "$C2 mC" "$C3 mB" "$S3 mC" "$V mB"; do
    set -- $pair
    check "$1 holds what was written when it was taken ($2)" same_as_pattern "$(attach "$1")" "$2"
done
check_eq "snapshot is read_write false" "false" "$(thinvdi-stat --json lineage "$S1" | jq -r .read_write)"
check_eq "snapshot kind" "snapshot" "$(thinvdi-stat --json lineage "$S2" | jq -r .kind)"
check_eq "clone is read_write true" "true" "$(thinvdi-stat --json lineage "$C2" | jq -r .read_write)"
check "snapshot's block device is read-only" is_readonly "$(attach "$S1")"
check "clone's block device is writable" bash -c "! [ \$(blockdev --getro $PC1) = 1 ]"
check_eq "snapshot copies the name when none is given" "s1" "$(thinvdi-stat --json lineage "$S2" | jq -r .name)"
check_eq "snapshot copies the description" "the origin" "$(thinvdi-stat --json lineage "$S1" | jq -r .description)"
check_eq "snapshot does not copy keys" "{}" "$(thinvdi-stat --json lineage "$S1" | jq -c .keys)"
check_eq "origin keeps its keys" '{"vdi-type":"user"}' "$(thinvdi-stat --json lineage "$V" | jq -c .keys)"
check_eq "attaching the snapshot again (read-only) gives the same device" "/dev/thinsr/$LSR/$S1" "$(attach --read-only "$S1")"
check_pool_agrees "$LSR" "after the matrix"

test_begin "the lineage tree"
tree=$(thinvdi-tree --json lineage)
check_eq "origin's children" "$(printf '%s\n' "$S1" "$C3" | sort | tr '\n' ' ')" \
    "$(jq -r ".[] | select(.key == \"$V\") | .children[].key" <<<"$tree" | sort | tr '\n' ' ')"
check_eq "s1's children" "$(printf '%s\n' "$S2" "$C1" | sort | tr '\n' ' ')" \
    "$(jq -r ".. | objects | select(.key == \"$S1\") | .children[].key" <<<"$tree" | sort | tr '\n' ' ')"
check_eq "c1's children" "$(printf '%s\n' "$C2" "$S3" | sort | tr '\n' ' ')" \
    "$(jq -r ".. | objects | select(.key == \"$C1\") | .children[].key" <<<"$tree" | sort | tr '\n' ' ')"
check_eq "every node's mapped = exclusive + shared" "true" \
    "$(jq '[.. | objects | select(has("mapped_bytes")) | .mapped_bytes == .exclusive_bytes + .shared_bytes] | all' <<<"$tree")"
check "c1 holds data of its own (exclusive > 0)" \
    test "$(jq ".. | objects | select(.key == \"$C1\") | .exclusive_bytes" <<<"$tree")" -gt 0
check "the text tree draws branches" bash -c "thinvdi-tree lineage | grep -q '├── '"

# ---------------------------------------------------------------- destroy anything
test_begin "destroy the origin of a three-deep chain, then a middle snapshot"
O=$(thinvdi-create lineage --name chain --size 32M)
write_pattern "$(attach "$O")" chain0 8
A=$(thinvdi-snapshot lineage "$O" --name chain-a)
B=$(thinvdi-snapshot lineage "$A" --name chain-b)
C=$(thinvdi-snapshot lineage "$B" --name chain-c)
thinvdi-detach lineage "$O"
check "destroy the origin" thinvdi-destroy lineage "$O"
check "destroy the middle snapshot" thinvdi-destroy lineage "$B"
check "chain-a intact" same_as_pattern "$(attach "$A")" chain0
check "chain-c intact" same_as_pattern "$(attach "$C")" chain0
check_eq "chain-c now hangs under chain-a" "$C" \
    "$(thinvdi-tree --json lineage "$A" | jq -r '.[0].children[].key')"
check_eq "chain-a is a root now" "$A" "$(thinvdi-tree --json lineage | jq -r ".[] | select(.key == \"$A\") | .key")"
check "other volumes untouched" same_as_pattern "$(attach "$C2")" mC
check_pool_agrees "$LSR" "after destroying chain nodes"

# ---------------------------------------------------------------- revert
test_begin "revert in place"
R=$(thinvdi-create lineage --name "revert me" --description "keep this" --size 32M)
thinvdi-set lineage "$R" content_id=abc is_a_snapshot=false >/dev/null
PR=$(attach "$R"); write_pattern "$PR" rA 8
R1=$(thinvdi-snapshot lineage "$R" --name r1); write_pattern "$PR" rB 8
R2=$(thinvdi-snapshot lineage "$R" --name r2); write_pattern "$PR" rC 8
before=$(thinvdi-stat --json lineage "$R" | jq -c '{key, uuid, name, description, keys}')
expect_failure 3 "revert of an attached volume" thinvdi-revert lineage "$R" "$R1"
thinvdi-detach lineage "$R"
check "revert to r1" thinvdi-revert lineage "$R" "$R1"
check "content is r1's (A)" same_as_pattern "$(attach "$R")" rA
thinvdi-detach lineage "$R"
check "revert to the newer r2" thinvdi-revert lineage "$R" "$R2"
check "content is r2's (B)" same_as_pattern "$(attach "$R")" rB
thinvdi-detach lineage "$R"
check "revert to r2 again" thinvdi-revert lineage "$R" "$R2"
check "content is still B" same_as_pattern "$(attach "$R")" rB
check "r1 unchanged" same_as_pattern "$(attach "$R1")" rA
check "r2 unchanged" same_as_pattern "$(attach "$R2")" rB
check_eq "key, uuid, name, description and keys unchanged" "$before" \
    "$(thinvdi-stat --json lineage "$R" | jq -c '{key, uuid, name, description, keys}')"
expect_failure 64 "reverting a snapshot is refused" thinvdi-revert lineage "$R1" "$R2"
expect_failure 2 "reverting to an unknown snapshot" thinvdi-revert lineage "$R" nope
check_pool_agrees "$LSR" "after reverts"

# ---------------------------------------------------------------- snapshot under a writer
test_begin "snapshot of a volume while a writer runs is a point-in-time image"
W=$(thinvdi-create lineage --name busy --size 8M)
PW=$(attach "$W")
progress=$THINSR_SCRATCH/writer.progress; stop=$THINSR_SCRATCH/writer.stop
rm -f "$stop"; echo 0 > "$progress"
# The writer numbers 4 KiB records in order and says how far it got; the test
# waits on that progress, not on time, so it holds on fast and slow machines.
( i=0; while [ ! -e "$stop" ] && [ $i -lt 2000 ]; do
      printf '%08d' "$i" | dd of="$PW" bs=4096 seek="$i" conv=sync oflag=direct status=none
      i=$((i + 1)); echo "$i" > "$progress"
  done ) &
writer=$!
until [ "$(cat "$progress")" -ge 20 ]; do sleep 0.1; done
WS=$(thinvdi-snapshot lineage "$W" --name busy-snap)
taken=$(cat "$progress")
until [ "$(cat "$progress")" -ge $((taken + 5)) ] || ! kill -0 "$writer" 2>/dev/null; do sleep 0.1; done
touch "$stop"; wait "$writer"
total=$(cat "$progress")
PWS=$(attach "$WS")
check "the snapshot holds a prefix of the sequence, cut while the writer ran" python3 - "$PWS" "$taken" "$total" <<'PY'
import sys
device, taken, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = open(device, "rb").read(2000 * 4096)
records = [data[i * 4096:i * 4096 + 8] for i in range(2000)]
written = [r != b"\0" * 8 for r in records]
n = written.index(False) if False in written else 2000
assert 20 <= n <= taken + 1, f"prefix of {n} records; the snapshot was taken after record {taken}"
assert n < total, f"the writer wrote {total} records, the snapshot has {n}: it should have missed the later ones"
assert all(records[i] == b"%08d" % i for i in range(n)), "a record before the cut is wrong"
assert not any(written[n:]), "a record after the first gap was written"
print(f"prefix of {n} of {total} records")
PY
check "the volume itself has every record" bash -c "[ \"\$(dd if=$PW bs=4096 skip=$((total - 1)) count=1 status=none | head -c 8)\" = $(printf '%08d' $((total - 1))) ]"

# ---------------------------------------------------------------- online grow
test_begin "resize"
G=$(thinvdi-create lineage --name grow --size 16M)
PG=$(attach "$G"); write_pattern "$PG" grow 16
check "grow an attached volume" thinvdi-resize lineage "$G" 48M
check_eq "blockdev sees the new size at once" "$((48 << 20))" "$(blockdev --getsize64 "$PG")"
check_eq "stat reports it" "$((48 << 20))" "$(thinvdi-stat --json lineage "$G" | jq .virtual_size)"
check "data intact after growing" same_as_pattern "$PG" grow
expect_failure 64 "shrinking is refused" thinvdi-resize lineage "$G" 8M
expect_failure 64 "resizing a snapshot is refused" thinvdi-resize lineage "$S1" 1G
check "resize to the same size is a no-op" thinvdi-resize lineage "$G" 48M
thinvdi-detach lineage "$G"
check "grow a detached volume" thinvdi-resize lineage "$G" 64M
check_eq "attach sees the grown size" "$((64 << 20))" "$(blockdev --getsize64 "$(attach "$G")")"

# ---------------------------------------------------------------- names and keys
test_begin "hostile name labels make safe, unique keys"
rm -f /tmp/pwned
long=$(head -c 4096 < /dev/zero | tr '\0' 'x')
names=("a b" "x/y" ".." ";" '$(touch /tmp/pwned)' '`touch /tmp/pwned`' $'line\nbreak' "$long" "日本語" "!!!" "!!!" "a b")
keys=()
for n in "${names[@]}"; do
    k=$(thinvdi-create lineage --name "$n" --size 1M) || fail "create with name '${n:0:20}'"
    keys+=("$k")
    check_eq "name round-trips exactly ('${n:0:12}')" "$n" "$(thinvdi-stat --json lineage "$k" | jq -j .name)"
done
check_eq "all keys distinct" "${#names[@]}" "$(printf '%s\n' "${keys[@]}" | sort -u | wc -l)"
check "keys use only safe characters and are bounded" bash -c \
    "printf '%s\n' ${keys[*]} | grep -Evx '[A-Za-z0-9._+~-]{1,64}' | wc -l | grep -qx 0"
check "no name reached a shell" test ! -e /tmp/pwned
check "a hostile-named volume attaches under /dev/thinsr" bash -c "attach() { thinvdi-attach lineage \"\$@\"; }; [ -b \"\$(thinvdi-attach lineage ${keys[5]})\" ]"

test_begin "keys round-trip, rename keeps the key"
K=$(thinvdi-create lineage --name keys --size 1M)
thinvdi-set lineage "$K" vdi-type=user content_id=6f1c is_a_snapshot=true snapshot_time=20261121T23:59:00Z \
    "snapshot_of=$V" _sm_config_host_abc=x=y "tagsweb=1" "clone-on-boot=$C3" 'odd=a b;$(c)' >/dev/null
check_eq "XAPI's keys come back exactly" \
    "{\"_sm_config_host_abc\":\"x=y\",\"clone-on-boot\":\"$C3\",\"content_id\":\"6f1c\",\"is_a_snapshot\":\"true\",\"odd\":\"a b;\$(c)\",\"snapshot_of\":\"$V\",\"snapshot_time\":\"20261121T23:59:00Z\",\"tagsweb\":\"1\",\"vdi-type\":\"user\"}" \
    "$(thinvdi-stat --json lineage "$K" | jq -cS .keys)"
thinvdi-unset lineage "$K" clone-on-boot odd not-set >/dev/null
check_eq "unset removes exactly those keys" "_sm_config_host_abc content_id is_a_snapshot snapshot_of snapshot_time tagsweb vdi-type" \
    "$(thinvdi-stat --json lineage "$K" | jq -r '.keys | keys | join(" ")')"
thinvdi-set lineage "$K" --name "renamed volume" --description "new text" >/dev/null
check_eq "rename changes the name" "renamed volume" "$(thinvdi-stat --json lineage "$K" | jq -r .name)"
check_eq "rename keeps the key" "$K" "$(thinvdi-stat --json lineage "$K" | jq -r .key)"
expect_failure 64 "set without anything to set" thinvdi-set lineage "$K"
expect_failure 64 "set with a malformed pair" thinvdi-set lineage "$K" novalue

test_begin "pool and catalog agree at the end"
check_pool_agrees "$LSR" "at the end"
final_metadata_check "$LSR"
