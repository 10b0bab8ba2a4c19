#!/usr/bin/env bash
# Builds the deployment's images (the same FROM scratch images as the Compose deployment, see
# ../compose/build-images.sh) and pushes them to a registry you name, then prints the parameters the templates take.
#   ./push-images.sh REGISTRY/PREFIX [TAG]
#   ./push-images.sh 123456789012.dkr.ecr.us-east-1.amazonaws.com/weft 0.1.0
# pushes REGISTRY/PREFIX/weft:TAG, REGISTRY/PREFIX/greeter:TAG and REGISTRY/PREFIX/nginx:TAG. Log in first (for ECR:
# aws ecr get-login-password | docker login --username AWS --password-stdin REGISTRY) and create the three
# repositories if your registry needs that (aws ecr create-repository --repository-name PREFIX/weft, ...).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 REGISTRY/PREFIX [TAG]" >&2
  exit 2
fi
prefix=${1%/}
tag=${2:-latest}
if ! [[ $prefix =~ ^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+$ ]]; then
  echo "push-images: $prefix is not REGISTRY/PREFIX (such as 123456789012.dkr.ecr.us-east-1.amazonaws.com/weft)" >&2
  exit 2
fi
if ! [[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$ ]]; then
  echo "push-images: $tag is not an image tag" >&2
  exit 2
fi
[ "${WEFT_SKIP_BUILD:-}" = 1 ] || "$here/../compose/build-images.sh"
for image in weft greeter nginx; do
  docker tag "weft-local/$image:latest" "$prefix/$image:$tag"
  docker push "$prefix/$image:$tag"
done
cat <<MSG

Pushed. Template parameters:
    WeftImage=$prefix/weft:$tag
    GreeterImage=$prefix/greeter:$tag
    NginxImage=$prefix/nginx:$tag
MSG
