# Helpers shared by the kernel suite's parts.
sr_json() { thinsr-stat --json "$1"; }
sr_field() { sr_json "$1" | jq -r ".$2"; }
# (Shell builtins where they do: each process costs 50-100 ms in the UML lab.)
pool_name() { echo "thinsr_${1//-/}_pool"; }
vg_of() { sr_field "$1" volume_group; }

# meta_path SR: the active metadata LV of SR's pool, found by its name (no tool run); the
# VG's name comes from thinsr-stat only when the LV is not active.
meta_path() {
    local found
    for found in /dev/mapper/*-thinsr_"${1//-/}"_meta; do [ -e "$found" ] && { echo "$found"; return; }; done
    local vg; vg=$(vg_of "$1"); echo "/dev/mapper/${vg//-/--}-thinsr_${1//-/}_meta"
}
thin_count() { # thin devices in SR $1's pool, via a metadata snapshot of the live pool
    # (A thin_ls that fails prints so: counted as no lines, it would pass a check for 0.)
    local pool listed; pool=$(pool_name "$1")
    dmsetup message "$pool" 0 reserve_metadata_snap
    if listed=$(thin_ls -m --no-headers -o DEV "$(meta_path "$1")"); then grep -c . <<<"$listed"; else echo "thin_ls failed"; fi
    dmsetup message "$pool" 0 release_metadata_snap
}
# check_pool_agrees SR: the pool's thin devices are exactly the catalog's volumes.
# Also thin_check the live pool's metadata, through a metadata snapshot.
check_pool_agrees() {
    # (data-destroyed snapshots and preallocated volumes have no thin device)
    check_eq "pool thin devices = catalog volumes ($2)" "$(thinvdi-ls --json "$1" | jq '[.[] | select(.thin_id != null)] | length')" \
        "$(thin_count "$1")"
    local pool; pool=$(pool_name "$1")
    dmsetup message "$pool" 0 reserve_metadata_snap
    check "thin_check of the live metadata ($2)" thin_check -q -m "$(meta_path "$1")"
    dmsetup message "$pool" 0 release_metadata_snap
}
# final_metadata_check SR: detach, thin_check and thin_dump the metadata offline, destroy.
final_metadata_check() {
    local sr=$1 vg hex count meta
    vg=$(vg_of "$sr"); hex=${sr//-/}
    count=$(thinvdi-ls --json "$sr" | jq '[.[] | select(.thin_id != null)] | length')   # data-destroyed snapshots and raw volumes have none
    for key in $(thinvdi-ls --json "$sr" | jq -r '.[] | select(.attached) | .key'); do thinvdi-detach "$sr" "$key"; done
    check "thinsr-detach $sr" thinsr-detach "$sr"
    lvchange -ay "$vg/thinsr_${hex}_meta"
    meta=/dev/$vg/thinsr_${hex}_meta
    check "thin_check clean on $vg" thin_check "$meta"
    check_eq "thin_dump device count = catalog volume count" "$count" "$(thin_dump "$meta" | grep -c '<device ')"
    lvchange -an "$vg/thinsr_${hex}_meta"
    check "thinsr-destroy --force" thinsr-destroy --force "$sr"
}
