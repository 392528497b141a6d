#!/usr/bin/env bash
# Builds the albert-ner image (training and serving) and pushes it to Amazon ECR.
#
#   container/build_and_push.sh [--no-push] [--local-base] [--tag TAG] [--name NAME] [--base-image IMAGE]
#
# Base image: TensorFlow's own GPU image by default (pulled from Docker Hub). --local-base
# instead bootstraps a Debian bookworm base on this machine once (build_base_image.sh, cached)
# and adds the tensorflow-cpu wheel: for machines that cannot pull from a registry (CI).
# With --local-base the wheels are downloaded on the host first (pip download of the lock files
# container/locks/installer.lock and image-cpu.lock, hash-checked, with the host's own pip
# settings) into container/wheelhouse/, and the build installs from there only.
# Region: AWS_REGION, else AWS_DEFAULT_REGION, else `aws configure get region`.
# Account: AWS_ACCOUNT_ID, else `aws sts get-caller-identity`.
# --no-push builds and tags locally only (the article's "skip the push while iterating").
# PYTHON (default python3) runs `pip download`; it must be the image's Python (3.11).
# Prints the image name (or the pushed URI) on the last line.
set -euo pipefail

name="albert-ner"
tag="latest"
push=1
base_image=""
local_base=0
while [ $# -gt 0 ]; do
    case "$1" in
        --no-push) push=0 ;;
        --local-base) local_base=1 ;;
        --tag) tag="$2"; shift ;;
        --name) name="$2"; shift ;;
        --base-image) base_image="$2"; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

root="$(cd "$(dirname "$0")/.." && pwd)"
build_args=()
wheelhouse="$root/container/wheelhouse"
mkdir -p "$wheelhouse"
if [ "$local_base" -eq 1 ]; then
    [ -z "$base_image" ] || { echo "error: --local-base and --base-image exclude each other" >&2; exit 2; }
    base_image="$(bash "$root/container/build_base_image.sh" | tail -n1)"
    python="${PYTHON:-python3}"
    if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        echo "error: $python is not Python 3.11, the base image's Python: set PYTHON" >&2
        exit 1
    fi
    # Exactly the files the locks name (see the Dockerfile's header; `make lock` writes them):
    # --require-hashes makes pip download refuse anything else.
    echo "downloading wheels into $wheelhouse: container/locks/installer.lock, image-cpu.lock"
    "$python" -m pip download --quiet --disable-pip-version-check --require-hashes --dest "$wheelhouse" \
        -r "$root/container/locks/installer.lock" -r "$root/container/locks/image-cpu.lock"
    build_args+=(--build-arg "BASE_IMAGE=$base_image" --build-arg "INSTALL_TENSORFLOW=1"
                --build-arg "WHEELS_ONLY=1")
elif [ -n "$base_image" ]; then
    build_args+=(--build-arg "BASE_IMAGE=$base_image")
fi
# BuildKit does not count what a RUN bind-mounts in its cache key, so without this the
# package layer would be reused after the source changed, leaving the old code in the image.
# The digest covers the content (not the times) of every file pip installs from.
source_digest="$(cd "$root" && find pyproject.toml src -type f ! -name '*.pyc' ! -path '*/__pycache__/*' \
                 ! -path '*.egg-info/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
build_args+=(--build-arg "SOURCE_DIGEST=$source_digest")
# The Dockerfile needs BuildKit (RUN --mount). Docker 23+ clients use it when the buildx
# plugin is there; 20.10 clients (Debian's docker.io) have it built in behind DOCKER_BUILDKIT=1.
docker_build() {
    if docker buildx version >/dev/null 2>&1; then
        DOCKER_BUILDKIT=1 docker build "$@"
        return
    fi
    local client version
    for client in $(type -ap docker); do
        version="$("$client" version --format '{{.Client.Version}}' 2>/dev/null || true)"
        if [ -n "$version" ] && [ "${version%%.*}" -lt 23 ]; then
            DOCKER_BUILDKIT=1 "$client" build "$@"
            return
        fi
    done
    echo "error: no Docker client with BuildKit: install the buildx plugin (docker-buildx)" >&2
    return 1
}

echo "building $name:$tag from $root${base_image:+ on $base_image}"
start=$(date +%s)
docker_build --progress=plain -f "$root/container/Dockerfile" -t "$name:$tag" "${build_args[@]}" "$root"
echo "built $name:$tag in $(( $(date +%s) - start )) s ($(docker image inspect --format '{{.Size}}' "$name:$tag" | awk '{printf "%.0f MB", $1/1e6}'))"

if [ "$push" -eq 0 ]; then
    echo "not pushing (--no-push)"
    echo "$name:$tag"
    exit 0
fi

region="${AWS_REGION:-${AWS_DEFAULT_REGION:-$(aws configure get region || true)}}"
if [ -z "$region" ]; then
    echo "error: no AWS region: set AWS_REGION" >&2
    exit 1
fi
account="${AWS_ACCOUNT_ID:-$(aws sts get-caller-identity --query Account --output text)}"
# China regions (the article's) use the amazonaws.com.cn domain.
domain="amazonaws.com"
case "$region" in cn-*) domain="amazonaws.com.cn" ;; esac
registry="$account.dkr.ecr.$region.$domain"
uri="$registry/$name:$tag"

aws ecr describe-repositories --region "$region" --repository-names "$name" >/dev/null 2>&1 \
    || aws ecr create-repository --region "$region" --repository-name "$name" >/dev/null
aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry"
docker tag "$name:$tag" "$uri"
docker push "$uri"
echo "$uri"
