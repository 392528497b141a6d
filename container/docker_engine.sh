#!/usr/bin/env bash
# Makes sure a Docker engine answers, installing and starting one when it is absent (CI, dev
# machines without Docker). Never fails: when the engine cannot be had, it says why on stdout
# and in STATUS_FILE, and the container tests skip with that reason.
#
#   container/docker_engine.sh [--image NAME:TAG] [STATUS_FILE]   (default runs/docker-engine-status.txt)
#
# As root with apt: installs docker.io, docker-compose and debootstrap (Debian packages) if
# missing, then starts `dockerd` in the background (pidfile /var/run/albert-ner-dockerd.pid,
# log /var/log/albert-ner-dockerd.log) with the overlay2 storage driver when this kernel lets
# us mount an overlay, else vfs (slower: every container start copies the image), and waits
# for `docker info`.
# --image: then also builds that image on the locally bootstrapped base (build_and_push.sh
# --local-base; PYTHON runs pip download). A base that cannot be bootstrapped (no Debian
# mirror) counts as "unavailable"; an image build that fails on a working engine and base is
# a real failure (exit 1).
# Exit status: 0 ready, 3 unavailable (reason written), 1 the image build failed.
set -uo pipefail

image=""
if [ "${1:-}" = "--image" ]; then
    image="$2"
    shift 2
fi
status_file="${1:-runs/docker-engine-status.txt}"
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$(dirname "$status_file")"
pidfile=/var/run/albert-ner-dockerd.pid
logfile=/var/log/albert-ner-dockerd.log

unavailable() {
    echo "docker: UNAVAILABLE: $1 (the container tests will be skipped)"
    echo "$1" > "$status_file"
    exit 3
}

ready() {
    echo "docker: engine answers ($(docker info --format '{{.ServerVersion}}, storage {{.Driver}}' 2>/dev/null))"
    rm -f "$status_file"
    [ -n "$image" ] || exit 0
    local start
    start=$(date +%s)
    if ! bash "$here/build_base_image.sh" > /tmp/albert-ner-base-image.log 2>&1; then
        unavailable "the Debian base image could not be bootstrapped: $(tail -n 1 /tmp/albert-ner-base-image.log)"
    fi
    echo "docker: $(tail -n 2 /tmp/albert-ner-base-image.log | head -n 1)"
    if ! bash "$here/build_and_push.sh" --no-push --local-base --name "${image%%:*}" --tag "${image#*:}" \
            > /tmp/albert-ner-image.log 2>&1; then
        tail -n 40 /tmp/albert-ner-image.log
        echo "docker: FAILED to build $image on a working engine (log /tmp/albert-ner-image.log)"
        exit 1
    fi
    echo "docker: $(grep '^built ' /tmp/albert-ner-image.log | tail -n 1); image ready in $(( $(date +%s) - start )) s in all"
    exit 0
}

if docker info >/dev/null 2>&1; then
    ready
fi
[ "$(id -u)" -eq 0 ] || unavailable "no Docker daemon, and starting one needs root"

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || missing+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || unavailable "no apt-get to install ${missing[*]}"
    echo "docker: installing ${missing[*]} with apt-get ..."
    if ! (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}") \
            > /tmp/albert-ner-apt.log 2>&1; then
        unavailable "apt-get install ${missing[*]} failed (log: /tmp/albert-ner-apt.log)"
    fi
fi

if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "docker: dockerd $(cat "$pidfile") is running but not answering yet"
else
    # overlay2 when an overlay mount works here (nested in a container it may not).
    driver=vfs
    probe=$(mktemp -d)
    mkdir -p "$probe"/{lower,upper,work,merged}
    if mount -t overlay overlay -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" \
            "$probe/merged" 2>/dev/null; then
        umount "$probe/merged"
        driver=overlay2
    fi
    rm -rf "$probe"
    echo "docker: starting dockerd (storage driver $driver, log $logfile)"
    nohup dockerd --storage-driver="$driver" --pidfile "$pidfile" > "$logfile" 2>&1 &
fi
for _ in $(seq 60); do
    if docker info >/dev/null 2>&1; then
        ready
    fi
    sleep 1
done
unavailable "dockerd did not answer within 60 s: $(tail -n 1 "$logfile" 2>/dev/null)"
