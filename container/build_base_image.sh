#!/usr/bin/env bash
# Builds a Debian bookworm base image (Python 3.11 in a venv at /opt/venv) without any
# container registry: debootstrap from the Debian mirror apt uses, then `docker import`.
# Cached: does nothing when the image already exists (built once per machine).
#
#   container/build_base_image.sh [--name NAME] [--force]
#
# Needs root, debootstrap and a running Docker daemon. Mirror: $DEBIAN_MIRROR, else the first
# Debian mirror in apt's sources, else http://deb.debian.org/debian.
# Prints the image name on the last line.
set -euo pipefail

name="albert-ner-base:bookworm-py311"
force=0
while [ $# -gt 0 ]; do
    case "$1" in
        --name) name="$2"; shift ;;
        --force) force=1 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ "$force" -eq 0 ] && docker image inspect "$name" >/dev/null 2>&1; then
    echo "base image $name exists (cached; --force rebuilds it)"
    echo "$name"
    exit 0
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    echo "error: debootstrap is not installed (apt-get install debootstrap)" >&2
    exit 1
fi

mirror_from_apt() {
    # deb822 sources (URIs: ...) first, then one-line sources (deb URI suite ...).
    local uri
    uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -i debian | grep -v security | head -n1 || true)
    if [ -z "$uri" ]; then
        uri=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
              | awk '{print $2}' | grep -i debian | grep -v security | head -n1 || true)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}
mirror="${DEBIAN_MIRROR:-$(mirror_from_apt)}"

workdir=$(mktemp -d /var/tmp/albert-ner-base.XXXXXX)
trap 'rm -rf "$workdir"' EXIT
rootfs="$workdir/rootfs"

start=$(date +%s)
echo "debootstrap bookworm from $mirror (log: $workdir/debootstrap.log) ..."
if ! debootstrap --variant=minbase --include=python3,python3-venv bookworm "$rootfs" "$mirror" \
        >"$workdir/debootstrap.log" 2>&1; then
    tail -n 20 "$workdir/debootstrap.log" >&2
    echo "error: debootstrap failed (mirror $mirror)" >&2
    exit 1
fi
# A venv keeps pip away from Debian's externally managed system Python (PEP 668).
chroot "$rootfs" /usr/bin/python3 -m venv /opt/venv
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

echo "importing $name ..."
tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python"]' \
    --message "debootstrap --variant=minbase bookworm + python3 venv at /opt/venv" \
    - "$name" >/dev/null
echo "base image $name built in $(( $(date +%s) - start )) s"
echo "$name"
