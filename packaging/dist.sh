#!/usr/bin/env bash
# packaging/dist.sh ROOT VERSION: turns ROOT, a `make install DESTDIR=ROOT PREFIX=/usr`
# tree, into a release any x86_64 Linux dom0 can run, XCP-ng 8.3's glibc 2.17 included:
# the binary gets a private C runtime (the loader, libc and what the binary links
# dynamically, copied from this build host) under /usr/lib/thinsr/runtime, reached
# through its ELF interpreter and run path; then a tarball of ROOT (laid out as it
# installs under /) and an RPM, both in the directory above ROOT.
# liblvm2cmd is not carried: thinsr loads the host's own (see ThinLVM), because sm
# and the admin write the same volume groups with it.
set -euo pipefail
root=$(realpath "$1"); version=$2
out=$(dirname "$root")
runtime=/usr/lib/thinsr/runtime
binary=$root/usr/sbin/thinsr
[ -x "$binary" ] || { echo "dist.sh: $binary is missing; run make install DESTDIR=$root PREFIX=/usr first" >&2; exit 1; }
for tool in patchelf rpmbuild; do
    command -v $tool >/dev/null || { echo "dist.sh: $tool is missing; run make deps" >&2; exit 1; }
done

# The private runtime: every library the loader resolves for the binary, by soname.
mkdir -p "$root$runtime"
interpreter=$(patchelf --print-interpreter "$binary")
install -m 0755 "$(realpath "$interpreter")" "$root$runtime/$(basename "$interpreter")"
ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }' | while read -r soname path; do
    install -m 0755 "$(realpath "$path")" "$root$runtime/$soname"
done
# DT_RPATH rather than DT_RUNPATH: it also serves the libraries' own needs (libdevmapper's
# libselinux), so nothing is looked up in the host's directories but liblvm2cmd.
patchelf --set-interpreter "$runtime/$(basename "$interpreter")" --force-rpath --set-rpath "$runtime" "$binary"
mkdir -p "$root/var/lib/thinsr" "$root/usr/share/doc/thinsr"
cat > "$root/usr/share/doc/thinsr/RUNTIME" <<NOTE
thinsr carries its own C runtime in $runtime, copied from the build host
($(ldd --version | head -n 1)): the dynamic loader, libc and the libraries the binary
links (the Swift runtime is linked in statically). liblvm2cmd is the host's own.
NOTE

name=thinsr-$version.x86_64
tar -C "$root" --owner=0 --group=0 --numeric-owner -czf "$out/$name.tar.gz" .

# The RPM packs the same tree.
top=$out/rpmbuild
rm -rf "$top"; mkdir -p "$top/SPECS" "$top/BUILDROOT"
{
    sed "s|@VERSION@|${version%%-*}|; s|@RELEASE@|$(tr -c 'A-Za-z0-9.\n' . <<<"${version#*-}" | sed 's/^$/1/')|" \
        "$(dirname "$0")/thinsr.spec.in"
    echo "%files"
    (cd "$root" && find . -mindepth 1 \( -type f -o -type l \) | sed 's|^\.||' | sort | while read -r path; do
        case $path in
        /usr/share/man/*) echo "%doc $path" ;;
        *) echo "$path" ;;
        esac
    done)
    (cd "$root" && for dir in usr/lib/thinsr usr/lib/thinsr/runtime usr/libexec/xapi-storage-script/volume/org.xen.xapi.storage.thinsr \
        usr/libexec/xapi-storage-script/datapath/thinsr usr/share/doc/thinsr var/lib/thinsr; do
        [ -d "$dir" ] && echo "%dir /$dir"; done)
} > "$top/SPECS/thinsr.spec"
rpmbuild --quiet --define "_topdir $top" --define "thinsr_root $root" --buildroot "$top/BUILDROOT/thinsr" \
    -bb "$top/SPECS/thinsr.spec" >"$top/rpmbuild.log" 2>&1 || { cat "$top/rpmbuild.log" >&2; exit 1; }
find "$top/RPMS" -name '*.rpm' -exec mv {} "$out/" \;
ls "$out"/*.rpm "$out/$name.tar.gz"
