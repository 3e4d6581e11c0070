#!/usr/bin/env bash
# Argument-level refusals, checked on the host: malformed sizes, policies and
# uuids, unknown options, missing and extra arguments. Each must exit 64 with
# one line on stderr naming what is wrong, and - the reason these run here and
# not in the kernel lab - never reach a device: strace shows no open of
# device-mapper, LVM, /run/thinsr or /dev/thinsr and no program started.
# The kernel suite's hostile part keeps every refusal that needs an SR, a
# volume or a device to decide. Usage: tests/host/refusals.sh [BINARY]
set -u
cd "$(dirname "$0")/../.."
binary=$(readlink -f "${1:-.build/debug/thinsr}")
[ -x "$binary" ] || { echo "tests/host/refusals.sh: $binary is not built; run 'make build'" >&2; exit 2; }
command -v strace >/dev/null || { echo "tests/host/refusals.sh: strace not found; run 'make deps'" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin"
for tool in $("$binary" --list); do ln -s "$binary" "$work/bin/$tool"; done

TRIED=0 REFUSED=0
# refuse PATTERN DESCRIPTION TOOL ARGS...: exit 64, one stderr line matching PATTERN, no device touched.
refuse() {
    local pattern=$1 what=$2 tool=$3; shift 3
    TRIED=$((TRIED + 1))
    strace -f -qq -o "$work/trace" -e trace=%file,ioctl,execve "$work/bin/$tool" "$@" \
        >"$work/out" 2>"$work/err" </dev/null
    local status=$? lines problems=""
    lines=$(wc -l < "$work/err")
    [ "$status" = 64 ] || problems+=" exit $status (want 64);"
    [ "$lines" = 1 ] || problems+=" $lines stderr lines;"
    # (The pointer to --help that ends usage errors names the tool, not the problem.)
    sed 's/; see [a-z-]* --help$//' "$work/err" | grep -Eq -- "$pattern" || problems+=" message does not name the problem (/$pattern/);"
    # (execve lines are left out: they carry the arguments, device names included.)
    local touched; touched=$(grep -v 'execve(' "$work/trace" |
        grep -Eo '"(/dev/mapper|/run/thinsr|/dev/thinsr|/dev/loop|/proc/devices)[^"]*"|liblvm2cmd[^"]*|lvm\.conf' | sort -u)
    [ -z "$touched" ] || problems+=" touched $(head -3 <<<"$touched" | tr '\n' ' ');"
    [ "$(grep -c 'execve(' "$work/trace")" = 1 ] || problems+=" started another program;"
    if [ -z "$problems" ]; then
        REFUSED=$((REFUSED + 1))
    else
        echo "FAIL $what:$problems"
        sed 's/^/     | /' "$work/err" | head -3
    fi
}

SIZES=("" "-1" "18446744073709551616" "99999999T" "12Q" "ten" "1.5G" "0x10" "1e9")
# The device and SR names here need not exist: the arguments are refused first.
for size in "${SIZES[@]}"; do
    refuse 'size' "thinvdi-create --size '$size'" thinvdi-create hostile --name sized --size "$size"
    refuse 'size' "thinvdi-resize to '$size'" thinvdi-resize hostile victim "$size"
    refuse 'size' "thinsr-extend --size '$size'" thinsr-extend hostile --size "$size"
    refuse 'size' "thinsr-create --pool-size '$size'" thinsr-create --vg uservg --pool-size "$size"
    refuse 'block.size' "thinsr-create --block-size '$size'" thinsr-create --device /dev/loop9 --block-size "$size"
    refuse 'metadata.size' "thinsr-create --metadata-size '$size'" thinsr-create --device /dev/loop9 --metadata-size "$size"
done
# Size 0 of a volume or an extension is refused by the kernel suite (checked
# once the SR is found); an SR's sizes are refused here.
refuse 'size' "thinsr-create --pool-size 0" thinsr-create --vg uservg --pool-size 0
refuse 'block size' "thinsr-create --block-size 0" thinsr-create --device /dev/loop9 --block-size 0
refuse 'metadata size' "thinsr-create --metadata-size 0" thinsr-create --device /dev/loop9 --metadata-size 0
for policy in "" "Queue" "fail" "1"; do
    refuse 'on-full' "thinsr-set --on-full '$policy'" thinsr-set hostile --on-full "$policy"
    refuse 'on-full' "thinsr-create --on-full '$policy'" thinsr-create --device /dev/loop9 --on-full "$policy"
done
for uuid in "" "not-a-uuid" "00000000-0000-0000-0000-00000000000g"; do
    refuse 'uuid' "thinsr-create --uuid '$uuid'" thinsr-create --uuid "$uuid" --device /dev/loop9
done
refuse 'device.*vg|vg.*device' "both --device and --vg" thinsr-create --device /dev/loop9 --vg uservg --pool-size 8M
refuse 'device.*vg|vg.*device' "neither --device nor --vg" thinsr-create --name x
refuse 'nothing to set' "set with nothing to set" thinsr-set hostile
refuse 'KEY=VALUE' "set a key without =" thinvdi-set hostile victim novalue
# Unknown options, missing and extra arguments, for every tool.
# (thinvdi-unset takes any number of keys: the kernel suite refuses its extra ones.)
for tool in $("$binary" --list); do
    refuse 'argument|option|bogus' "$tool --bogus" "$tool" --bogus
    # (thinvdi-resize's third argument is its size: "c" is refused as one.)
    # (thinvdi-mirror-stat takes any number of operations: refused below.)
    [ "$tool" = thinvdi-unset ] || [ "$tool" = thinvdi-mirror-stat ] || refuse 'argument|KEY=VALUE|<size>' "$tool with too many arguments" "$tool" a b c d e
done

refuse 'offset.*65536' "thinvdi-changed --offset not a multiple of 64 KiB" thinvdi-changed hostile a b --bitmap --offset 1000
refuse 'backing' "thinvdi-import - with --backing" thinvdi-import hostile --name x --size 1M --backing /tmp -
refuse 'not an NBD URI' "thinvdi-mirror to a file URI" thinvdi-mirror hostile v file:///etc/passwd
refuse 'socket path' "thinvdi-mirror with qemu options in the socket path" thinvdi-mirror hostile v 'nbd+unix:///x?socket=/run/a,file.driver=file'
refuse 'port' "thinvdi-mirror to a port out of range" thinvdi-mirror hostile v nbd://host:70000/x
refuse 'connect-timeout' "thinvdi-mirror --connect-timeout 0" thinvdi-mirror hostile v nbd://host/x --connect-timeout 0
refuse 'remote-timeout' "thinvdi-mirror --remote-timeout 0" thinvdi-mirror hostile v nbd://host/x --remote-timeout 0
refuse 'no mirror operation' "thinvdi-mirror-stat of an id that is none" thinvdi-mirror-stat nonsense
refuse 'not a mirror operation' "thinvdi-mirror-stop of an id that is none" thinvdi-mirror-stop nonsense
# An export's temporary file in a directory every user can rearrange could be swapped for a link.
mkdir -p "$work/open" && chmod 0777 "$work/open"
refuse 'writable by every user' "thinvdi-export into a world-writable directory without the sticky bit" thinvdi-export hostile v "$work/open/v.qcow2"
# Storage motion: compose needs both volumes; a holder's server names its own socket.
refuse 'argument|parent' "thinvdi-compose without a parent" thinvdi-compose hostile child
refuse 'holder.*--socket|--socket' "thinvdi-serve --holder with --socket" thinvdi-serve hostile v --holder 7 --socket /tmp/s
refuse 'holder.*--writable|--writable' "thinvdi-serve --holder with --writable" thinvdi-serve hostile v --holder 7 --writable
refuse 'receive.*holder' "thinvdi-serve --receive without --holder" thinvdi-serve hostile v --receive --socket /tmp/s
echo "host-checked refusals: $TRIED tried, $REFUSED refused before any device access"
[ "$TRIED" = "$REFUSED" ] && [ "$TRIED" -ge 115 ]
