# Helpers shared by the kernel suite's parts.
sr_json() { thinsr-stat --json "$1"; }
sr_field() { sr_json "$1" | jq -r ".$2"; }
# (Shell builtins where they do: each process costs 50-100 ms in the UML lab.)
pool_name() { echo "thinsr_${1//-/}_pool"; }
vg_of() { sr_field "$1" volume_group; }

# meta_path SR [VAR]: the active metadata LV of SR's pool, found by its name (no tool run); the
# VG's name comes from thinsr-stat only when the LV is not active. With VAR, sets VAR instead
# of printing (no $(...) subshell).
meta_path() {
    local found vg
    for found in /dev/mapper/*-thinsr_"${1//-/}"_meta; do [ -e "$found" ] && break; found=""; done
    if [ -z "$found" ]; then vg=$(vg_of "$1"); found="/dev/mapper/${vg//-/--}-thinsr_${1//-/}_meta"; fi
    if [ -n "${2:-}" ]; then printf -v "$2" '%s' "$found"; else echo "$found"; fi
}
thin_count() { # thin devices in SR $1's pool, via a metadata snapshot of the live pool
    # (A thin_ls that fails prints so: counted as no lines, it would pass a check for 0.)
    # (The lines are counted by the shell: grep -c . counted the non-empty ones.)
    local pool="thinsr_${1//-/}_pool" meta lines line count=0
    meta_path "$1" meta
    dmsetup message "$pool" 0 reserve_metadata_snap
    if thin_ls -m --no-headers -o DEV "$meta" >"$THINSR_SCRATCH/thin_count"; then
        mapfile -t lines <"$THINSR_SCRATCH/thin_count"
        for line in "${lines[@]}"; do [ -n "$line" ] && count=$((count + 1)); done
        echo "$count"
    else
        echo "thin_ls failed"
    fi
    dmsetup message "$pool" 0 release_metadata_snap
}
# check_pool_agrees SR: the pool's thin devices are exactly the catalog's volumes.
# Also thin_check the live pool's metadata, through a metadata snapshot.
check_pool_agrees() {
    # (data-destroyed snapshots and preallocated volumes have no thin device)
    local listed count pool="thinsr_${1//-/}_pool" meta
    thinvdi-ls --json "$1" >"$THINSR_SCRATCH/pool_agrees.json"
    capture listed jq '[.[] | select(.thin_id != null)] | length' "$THINSR_SCRATCH/pool_agrees.json"
    capture count thin_count "$1"
    check_eq "pool thin devices = catalog volumes ($2)" "$listed" "$count"
    meta_path "$1" meta
    dmsetup message "$pool" 0 reserve_metadata_snap
    check "thin_check of the live metadata ($2)" thin_check -q -m "$meta"
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
