# Host ownership through LVM system IDs. The lab plays two hosts by switching
# the system ID its LVM configuration gives (LVM_SYSTEM_DIR, read by lvm and
# by liblvm2cmd alike).

test_begin "an SR belongs to one host: LVM system IDs and --take-over"
LVMDIR=$THINSR_SCRATCH/lvm-ownership
mkdir -p "$LVMDIR"
echo 'global { system_id_source = "lvmlocal" }' > "$LVMDIR/lvm.conf"
be_host() { echo "local { system_id = \"$1\" }" > "$LVMDIR/lvmlocal.conf"; }
be_host hostA
LAB_LVM_SYSTEM_DIR=$LVM_SYSTEM_DIR
export LVM_SYSTEM_DIR=$LVMDIR
check_eq "the lab host is hostA" "hostA" "$(lvm systemid | awk '{print $3}')"
new_loop OD1 256
OWN=$(thinsr-create --name owned --device "$OD1")
OVG=$(vg_of "$OWN")
check_eq "the SR's VG carries this host's system ID" "hostA" "$(vgs --noheadings -o vg_systemid "$OVG" | tr -d ' ')"
OK1=$(thinvdi-create owned --name data --size 16M)
P=$(thinvdi-attach owned "$OK1"); write_pattern "$P" owned 16; thinvdi-detach owned "$OK1"
check "thinsr-detach on hostA" thinsr-detach owned

be_host hostB
check_eq "thinsr-ls on hostB names the owner" "hostA" "$(thinsr-ls --json | jq -r --arg u "$OWN" '.[] | select(.uuid == $u) | .owner')"
expect_failure 3 "hostB refuses to attach hostA's SR" thinsr-attach "$OWN"
check "the error names the owner and --take-over" grep -q 'host "hostA".*--take-over' /tmp/ef.err
check_eq "--json says Activated_on_another_host with the owner, the shape xapi reads" \
    '["Activated_on_another_host","hostA"]' "$(thinsr-attach --json "$OWN" 2>/dev/null | jq -c .params)"
make -s install-plugins DESTDIR="$THINSR_SCRATCH/root" >/dev/null
XAPI_ERR=$(echo "{\"dbg\": \"x\", \"configuration\": {\"sr_uuid\": \"$OWN\"}}" | THINSR_TOOLS_DIR=$THINSR_SCRATCH/bin \
    "$THINSR_SCRATCH/root/usr/libexec/xapi-storage-script/volume/org.xen.xapi.storage.thinsr/SR.attach" --json)
check_eq "SR.attach through the plugin: params [Activated_on_another_host, owner]" \
    '["Activated_on_another_host","hostA"]' "$(echo "$XAPI_ERR" | jq -c .params)"
expect_failure 3 "hostB refuses to destroy hostA's SR" thinsr-destroy --force "$OWN"
expect_failure 3 "hostB refuses to check hostA's SR" thinsr-check --repair "$OWN"
check "hostB takes it over with --take-over" thinsr-attach --take-over "$OWN"
check_eq "the VG now carries hostB's system ID" "hostB" "$(vgs --noheadings -o vg_systemid "$OVG" | tr -d ' ')"
P=$(thinvdi-attach owned "$OK1")
check "the data came across intact (cmp)" same_as_pattern "$P" owned
thinvdi-detach owned "$OK1"
check "thinsr-detach on hostB" thinsr-detach owned

be_host hostA
expect_failure 3 "now hostA is the one refused" thinsr-attach "$OWN"
be_host hostB
check "hostB destroys its SR" thinsr-destroy --force "$OWN"
export LVM_SYSTEM_DIR=$LAB_LVM_SYSTEM_DIR   # later parts use the lab's own LVM configuration again
check_eq "nothing of the SR is left" "" "$(lvs --foreign --noheadings -o lv_tags 2>/dev/null | grep "$OWN")"
