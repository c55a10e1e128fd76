#!/bin/sh
# Builds the local test image "scitq-test-busybox" without any registry: a root file
# system holding Debian's statically linked busybox (package busybox-static) and one
# symbolic link per applet, imported with PATH=/bin.
#
# Usage: build-busybox.sh [RUNTIME [IMAGE]]   (defaults: podman scitq-test-busybox)
set -eu

runtime=${1:-podman}
image=${2:-scitq-test-busybox}
busybox=/bin/busybox

if [ ! -x "$busybox" ]; then
    echo "no $busybox: install Debian's busybox-static" >&2
    exit 1
fi
# A dynamically linked busybox (package busybox) would find no libc in the image.
if ldd "$busybox" >/dev/null 2>&1; then
    echo "$busybox is dynamically linked: install busybox-static instead of busybox" >&2
    exit 1
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/tmp" "$root/input" "$root/output" "$root/resource"
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
tar -C "$root" -c . | "$runtime" import --change 'ENV PATH=/bin' - "$image" >/dev/null
echo "built $image with $runtime"
