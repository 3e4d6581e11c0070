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
# Mounted read-only: a read-write ext4 writes its first MiB in the background (lazy init, commits).
mkfs.ext4 -q "$HD2" && mkdir -p "$THINSR_SCRATCH/mnt" && mount -o ro "$HD2" "$THINSR_SCRATCH/mnt"

full_state() { # full_state VAR: what a refused command must leave as it was, as text (diffable when it changes)
    # Activation shows in the dm tables; any other LV change (create, remove,
    # rename, resize, tags) writes its VG's metadata area header, and a new
    # label or filesystem its device's first KiBs: lvm_areas reads them all.
    # The victim's data, those KiBs and the catalogs (with any write-ahead log
    # left) are digested by one sha256sum. Four processes in all, and no
    # subshell: the text goes through a scratch file (a fork costs tens of ms
    # in the UML lab, and this runs after every one of some 280 refusals).
    local text=$THINSR_SCRATCH/full-state
    lvm_areas >"$text.areas"
    {
        dm_state
        thinsr_files
        sha256sum "$text.areas" "$HP" /run/thinsr/*/catalog/catalog.db /run/thinsr/*/catalog/catalog.db-wal 2>/dev/null
    } >"$text"
    IFS= read -r -d '' "$1" <"$text"
}
TRIED=0 REFUSED=0
full_state STATE_BEFORE
# The capture must see what it guards: a tag on the user's LV and a suspended device both show.
lvchange -q --addtag hostile-probe uservg/precious
full_state STATE_PROBED
check "the state capture sees an LVM metadata change" test "$STATE_PROBED" != "$STATE_BEFORE"
lvchange -q --deltag hostile-probe uservg/precious
DM_BEFORE=$(dm_state)       # (full_state reads the victim's data: not while it is suspended)
dmsetup suspend "$(basename "$(readlink "$HP")")"
check "the state capture sees a suspended device" test "$(dm_state)" != "$DM_BEFORE"
dmsetup resume "$(basename "$(readlink "$HP")")"
full_state STATE_BEFORE
refuse() { # refuse DESCRIPTION COMMAND...: any documented non-zero status, one stderr line, nothing changed
    local what=$1; shift
    TRIED=$((TRIED + 1))
    "$@" >/tmp/h.out 2>/tmp/h.err </dev/null
    local status=$? errors after
    mapfile -t errors </tmp/h.err
    full_state after
    case $status in 2|3|4|5|64|77) documented=1 ;; *) documented=0 ;; esac
    if [ "$documented" = 1 ] && [ "${#errors[@]}" = 1 ] && [ "$STATE_BEFORE" = "$after" ]; then
        REFUSED=$((REFUSED + 1))
    else
        fail "$what: exit $status, ${#errors[@]} stderr lines, state $([ "$STATE_BEFORE" = "$after" ] && echo unchanged || echo CHANGED)"
        printf '     | %s\n' "${errors[@]:0:3}"
        diff <(echo "$STATE_BEFORE") <(echo "$after") | head -6 | sed 's/^/     | /'
        STATE_BEFORE=$after
    fi
}

LONG=$(head -c 4096 /dev/zero | tr '\0' x)
NAMES=("" "a/b" "../../etc" ";reboot" '$(touch /tmp/pwned)' '`touch /tmp/pwned`' $'two\nlines' "$LONG" "ünïcødé-🚀" "-x" "nosuch")
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
# Malformed sizes, policies and uuids, unknown options and extra arguments are
# refused before any device is touched: tests/host/refusals.sh checks those on
# the host (with strace). What follows needs the SR, the VG or a device to decide.
refuse "thinvdi-resize to 0" thinvdi-resize hostile "$HV" 0
refuse "thinsr-extend --size 0" thinsr-extend hostile --size 0
refuse "thinsr-set --name shaped like a uuid" thinsr-set hostile --name "$(cat /proc/sys/kernel/random/uuid)"
refuse "thinsr-create --uuid of an existing SR" thinsr-create --uuid "$HSR" --device "$HD3"
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
refuse "set an empty key" thinvdi-set hostile "$HV" =v
refuse "extend a be-nice SR with --device" thinsr-extend hostile --device "$HD3"
refuse "extend beyond the VG" thinsr-extend hostile --size 100G
refuse "create larger than a VG" thinsr-create --vg uservg --pool-size 10T
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
refuse "thinvdi-unset with extra arguments and an unknown SR" thinvdi-unset a b c d e
# Not root.
refuse "a mutating tool as nobody" setpriv --reuid=65534 --regid=65534 --clear-groups thinvdi-create hostile --name x --size 4M

echo "hostile invocations: $TRIED tried, $REFUSED refused cleanly"
check "at least 245 hostile invocations (and more on the host: tests/host/refusals.sh)" test "$TRIED" -ge 245
check_eq "every hostile invocation was refused cleanly" "$TRIED" "$REFUSED"
check "no hostile name ran a command" test ! -e /tmp/pwned
check "victim data intact" same_as_pattern "$HP" victim
umount "$THINSR_SCRATCH/mnt"
thinvdi-detach hostile "$HV"
check "thinsr-detach --force" thinsr-detach --force hostile
check "thinsr-destroy --force" thinsr-destroy --force hostile
check_eq "only the user's LV is left" "precious" "$(lvs --noheadings -o lv_name uservg | tr -d ' ')"
check_eq "the user's LV is as it was before any test" "$USER_BEFORE" "$(user_digest)"
