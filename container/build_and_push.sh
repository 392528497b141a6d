#!/usr/bin/env bash
# Builds the albert-ner training image and pushes it to Amazon ECR.
#
#   container/build_and_push.sh [--no-push] [--tag TAG] [--name NAME] [--base-image IMAGE]
#
# Region: AWS_REGION, else AWS_DEFAULT_REGION, else `aws configure get region`.
# Account: AWS_ACCOUNT_ID, else `aws sts get-caller-identity`.
# --no-push builds and tags locally only (the article's "skip the push while iterating").
# Prints the image URI on the last line.
set -euo pipefail

name="albert-ner"
tag="latest"
push=1
base_image=""
while [ $# -gt 0 ]; do
    case "$1" in
        --no-push) push=0 ;;
        --tag) tag="$2"; shift ;;
        --name) name="$2"; shift ;;
        --base-image) base_image="$2"; shift ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

root="$(cd "$(dirname "$0")/.." && pwd)"
build_args=()
if [ -n "$base_image" ]; then
    build_args+=(--build-arg "BASE_IMAGE=$base_image")
fi

echo "building $name:$tag from $root"
docker build -f "$root/container/Dockerfile" -t "$name:$tag" "${build_args[@]}" "$root"

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
