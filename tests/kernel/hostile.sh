# Hostile and malformed input, generated: every tool, every argument, values
# that are empty, negative, overflowing, of the wrong type or unit; unknown and
# hostile SR and volume names; snapshots where a writable volume is needed;
# devices that are not free. Each must exit with a documented non-zero status
# and one line on stderr, and leave the whole state digest unchanged: dm
# tables, LVs, PVs, every catalog (dumped with sqlite3) and every volume's data.
# The be-nice SR shares its VG with a user's LV, digested before and after.

test_begin "hostile input: documented refusals that change nothing"
new_loop HD1 512
new_loop HD2 64
new_loop HD3 64
pvcreate -q "$HD1" >/dev/null && vgcreate -q uservg "$HD1" >/dev/null
lvcreate -q -y -n precious -L 32M uservg >/dev/null
write_pattern /dev/uservg/precious precious 32
user_digest() { { lvs --noheadings -o lv_name,lv_size,lv_attr,lv_tags,devices uservg | grep -v thinsr_; sha256sum < /dev/uservg/precious; } | sha256sum; }
USER_BEFORE=$(user_digest)
HSR=$(thinsr-create --name hostile --vg uservg --pool-size 128M)
HV=$(thinvdi-create hostile --name victim --size 8M)
HP=$(thinvdi-attach hostile "$HV"); write_pattern "$HP" victim 8
HS=$(thinvdi-snapshot hostile "$HV" --name victim-snap)
mkfs.ext4 -q "$HD2" && mkdir -p "$THINSR_LAB/mnt" && mount "$HD2" "$THINSR_LAB/mnt"

full_state() { # what a refused command must leave as it was, as text (diffable when it changes)
    # Activation shows in the dm tables; any other LV change (create, remove,
    # rename, resize, tags) bumps its VG's metadata sequence number.
    dmsetup table 2>/dev/null | sort
    pvs --noheadings -o pv_name,vg_name,vg_seqno,pv_tags 2>/dev/null | sort
    blkid -p -o export "${LOOPS[@]}" 2>/dev/null | grep -E '^(DEVNAME|TYPE)='
    thinsr_files
    for db in /run/thinsr/*/catalog/catalog.db; do sqlite3 "file:$db?mode=ro" .dump 2>/dev/null | sha256sum; done
    sha256sum < "$HP"
}
TRIED=0 REFUSED=0
full_state > "$THINSR_LAB/state-before"
refuse() { # refuse DESCRIPTION COMMAND...: any documented non-zero status, one stderr line, nothing changed
    local what=$1; shift
    TRIED=$((TRIED + 1))
    "$@" >/tmp/h.out 2>/tmp/h.err </dev/null
    local status=$? lines; lines=$(wc -l < /tmp/h.err)
    full_state > "$THINSR_LAB/state-after"
    local same=0; cmp -s "$THINSR_LAB/state-before" "$THINSR_LAB/state-after" && same=1
    case $status in 2|3|4|5|64|77) documented=1 ;; *) documented=0 ;; esac
    if [ "$documented" = 1 ] && [ "$lines" = 1 ] && [ "$same" = 1 ]; then
        REFUSED=$((REFUSED + 1))
    else
        fail "$what: exit $status, $lines stderr lines, state $([ "$same" = 1 ] && echo unchanged || echo CHANGED)"
        head -c 300 /tmp/h.err | sed 's/^/     | /'
        diff "$THINSR_LAB/state-before" "$THINSR_LAB/state-after" | head -6 | sed 's/^/     | /'
        mv "$THINSR_LAB/state-after" "$THINSR_LAB/state-before"
    fi
}

LONG=$(head -c 4096 /dev/zero | tr '\0' x)
NAMES=("" "a/b" "../../etc" ";reboot" '$(touch /tmp/pwned)' '`touch /tmp/pwned`' $'two\nlines' "$LONG" "ünïcødé-🚀" "-x" "nosuch")
SIZES=("" "-1" "0" "18446744073709551616" "99999999T" "12Q" "ten" "1.5G" "0x10" "1e9")
VDI_TOOLS=(thinvdi-destroy thinvdi-stat thinvdi-attach thinvdi-detach thinvdi-snapshot thinvdi-clone thinvdi-tree)

for name in "${NAMES[@]}"; do
    for tool in thinsr-attach thinsr-detach thinsr-destroy thinsr-stat thinsr-check thinsr-extend thinvdi-ls; do
        refuse "$tool SR '${name:0:20}'" "$tool" "$name"
    done
    refuse "thinvdi-create in SR '${name:0:20}'" thinvdi-create "$name" --name x --size 4M
    for tool in "${VDI_TOOLS[@]}"; do
        refuse "$tool unknown volume '${name:0:20}'" "$tool" hostile "$name"
    done
    refuse "thinvdi-revert to '${name:0:20}'" thinvdi-revert hostile "$HV" "$name"
    refuse "thinvdi-resize '${name:0:20}'" thinvdi-resize hostile "$name" 16M
    refuse "thinvdi-set on '${name:0:20}'" thinvdi-set hostile "$name" --name y
done
for size in "${SIZES[@]}"; do
    refuse "thinvdi-create --size '$size'" thinvdi-create hostile --name sized --size "$size"
    refuse "thinvdi-resize to '$size'" thinvdi-resize hostile "$HV" "$size"
    refuse "thinsr-extend --size '$size'" thinsr-extend hostile --size "$size"
    refuse "thinsr-create --pool-size '$size'" thinsr-create --vg uservg --pool-size "$size"
    refuse "thinsr-create --block-size '$size'" thinsr-create --device "$HD3" --block-size "$size"
    refuse "thinsr-create --metadata-size '$size'" thinsr-create --device "$HD3" --metadata-size "$size"
done
for policy in "" "Queue" "fail" "1"; do
    refuse "thinsr-set --on-full '$policy'" thinsr-set hostile --on-full "$policy"
    refuse "thinsr-create --on-full '$policy'" thinsr-create --device "$HD3" --on-full "$policy"
done
for uuid in "" "not-a-uuid" "$HSR" "00000000-0000-0000-0000-00000000000g"; do
    refuse "thinsr-create --uuid '$uuid'" thinsr-create --uuid "$uuid" --device "$HD3"
done
# Snapshots where a writable volume is needed; states that forbid the operation.
refuse "resize a snapshot" thinvdi-resize hostile "$HS" 16M
refuse "revert a snapshot" thinvdi-revert hostile "$HS" "$HV"
refuse "revert an attached volume" thinvdi-revert hostile "$HV" "$HS"
refuse "revert to itself" thinvdi-revert hostile "$HV" "$HV"
refuse "shrink" thinvdi-resize hostile "$HV" 4M
refuse "destroy an attached volume" thinvdi-destroy hostile "$HV"
refuse "attach read-write while attached" thinvdi-attach --read-only hostile "$HV"
refuse "destroy an attached SR" thinsr-destroy hostile
refuse "detach an SR with attached volumes" thinsr-detach hostile
refuse "set with nothing to set" thinsr-set hostile
refuse "set a key without =" thinvdi-set hostile "$HV" novalue
refuse "set an empty key" thinvdi-set hostile "$HV" =v
refuse "extend a be-nice SR with --device" thinsr-extend hostile --device "$HD3"
refuse "extend beyond the VG" thinsr-extend hostile --size 100G
refuse "create larger than a VG" thinsr-create --vg uservg --pool-size 10T
refuse "both --device and --vg" thinsr-create --device "$HD3" --vg uservg --pool-size 8M
refuse "neither --device nor --vg" thinsr-create --name x
refuse "--vg without --pool-size" thinsr-create --vg uservg
refuse "--vg that does not exist" thinsr-create --vg nosuchvg --pool-size 8M
refuse "--vg with a hostile name" thinsr-create --vg '../x;y' --pool-size 8M
# Devices that are not free.
for device in "" /etc/passwd /dev/null /dev/nosuch "$HD1" "$HD2" "$HP" "/dev/thinsr/$HSR/$HV" /dev/uservg/precious \
              "$(readlink -f "$HP")" "relative/path" "/dev/../dev/null"; do
    refuse "thinsr-create --device '$device'" thinsr-create --device "$device"
    refuse "thinsr-extend --device '$device'" thinsr-extend "$HSR" --device "$device"
done
refuse "the same device twice" thinsr-create --device "$HD3" --device "$HD3"
# Unknown options, missing and extra arguments, for every tool.
for tool in $(thinsr --list); do
    refuse "$tool --bogus" "$tool" --bogus
    refuse "$tool with too many arguments" "$tool" a b c d e
done
# Not root.
refuse "a mutating tool as nobody" setpriv --reuid=65534 --regid=65534 --clear-groups thinvdi-create hostile --name x --size 4M

echo "hostile invocations: $TRIED tried, $REFUSED refused cleanly"
check "at least 200 hostile invocations" test "$TRIED" -ge 200
check_eq "every hostile invocation was refused cleanly" "$TRIED" "$REFUSED"
check "no hostile name ran a command" test ! -e /tmp/pwned
check "victim data intact" same_as_pattern "$HP" victim
umount "$THINSR_LAB/mnt"
