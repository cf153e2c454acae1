#!/bin/sh
# Make a minimal root filesystem for an image's runtime stage, in its build stage.
#
#   runtime-root.sh ROOTFS [PATH...]
#
# ROOTFS gets:
# - each PATH (file, link or folder), copied at its own path;
# - the shared libraries that the ELF files under the PATHs and under the folders of
#   LIBS_OF (space-separated; analysed, not copied: the model image copies llama-server
#   and its backends to /app itself) load, as ldd resolves them here, with the dynamic
#   loader, each under its resolved folder;
# - busybox-static as /bin/sh with the applets named in APPLETS (`all`: every one but
#   dpkg and rpm);
# - passwd and group entries for root and uid/gid 10001, named RUNTIME_USER;
# - /tmp (1777) and the merged-/usr links of the build stage (/bin -> usr/bin, ...).
# Only the applets are listed by hand: a new release that links one more library gets it
# without an edit here. One copy: the supervisor's build stages it into its own context
# (supervisor/.build/, by sandboxctl/stack/images.py), since a build sees only its folder.
set -eu

rootfs="$1"
shift
user="${RUNTIME_USER:-llama}"
applets="${APPLETS:-sh cat echo env false id ls printf nc ps readlink sleep test timeout touch tr}"
libs_of="${LIBS_OF:-}"

is_elf() {
    [ "$(head -c 4 "$1" | tail -c 3)" = "ELF" ]
}

mkdir -p "$rootfs/usr/bin" "$rootfs/usr/lib" "$rootfs/etc"
mkdir -m 1777 "$rootfs/tmp"
for top in bin sbin lib lib32 lib64 libx32; do
    if [ -L "/$top" ]; then
        ln -s "$(readlink "/$top")" "$rootfs/$top"
    fi
done

for path in "$@"; do
    mkdir -p "$rootfs$(dirname "$path")"
    cp -a "$path" "$rootfs$path"
done

# Every library that ldd resolves, outside the LIBS_OF folders (RUNPATH $ORIGIN finds
# those next to the executable), copied under its resolved folder.
# shellcheck disable=SC2086
find $libs_of "$@" -type f \( -name '*.so*' -o -perm -u+x \) 2>/dev/null \
    | while read -r file; do
        if is_elf "$file"; then
            ldd "$file" || true
        fi
    done | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u \
    > /tmp/runtime-libs
grep -q 'ld-linux' /tmp/runtime-libs || { echo "runtime-root: no dynamic loader found" >&2; exit 1; }
while read -r lib; do
    skip=""
    for dir in $libs_of; do
        case "$lib" in "$dir"/*) skip=1 ;; esac
    done
    [ -z "$skip" ] || continue
    dir="$(readlink -f "$(dirname "$lib")")"
    mkdir -p "$rootfs$dir"
    cp -L "$lib" "$rootfs$dir/$(basename "$lib")"
    echo "runtime-root: $lib"
done < /tmp/runtime-libs

cp /bin/busybox "$rootfs/usr/bin/busybox"
if [ "$applets" = all ]; then
    # Every applet but busybox's package managers: no dpkg, no rpm in these images.
    applets="$(/bin/busybox --list | grep -v -x -e dpkg -e dpkg-deb -e rpm -e rpm2cpio)"
fi
for applet in $applets; do
    if [ ! -e "$rootfs/usr/bin/$applet" ] && [ "$applet" != busybox ]; then
        ln -s busybox "$rootfs/usr/bin/$applet"
    fi
done

printf 'root:x:0:0:root:/root:/bin/sh\n%s:x:10001:10001:%s:/nonexistent:/bin/false\n' \
    "$user" "$user" > "$rootfs/etc/passwd"
printf 'root:x:0:\n%s:x:10001:\n' "$user" > "$rootfs/etc/group"
