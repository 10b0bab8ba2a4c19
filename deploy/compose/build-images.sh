#!/usr/bin/env bash
# Builds the deployment's three images without a registry (nothing is pulled):
#   weft-local/weft     FROM scratch: statically linked weft and weft-sidecar (which `weft connect proxy` runs),
#                       plus curl and its libraries for the walkthrough
#   weft-local/greeter  FROM scratch: the statically linked greeting/name/greeter demo
#   weft-local/nginx    FROM scratch: Debian's nginx and the shared libraries it loads
# Needs cargo, docker, and Debian's nginx and curl on the build machine (`apt-get install nginx-light curl`).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

for tool in docker curl ldd; do
  command -v "$tool" >/dev/null || { echo "build-images: $tool is not installed" >&2; exit 1; }
done
nginx_bin=$(command -v nginx || true)
[ -n "$nginx_bin" ] || [ ! -x /usr/sbin/nginx ] || nginx_bin=/usr/sbin/nginx
[ -n "$nginx_bin" ] || { echo "build-images: nginx is not installed (apt-get install nginx-light)" >&2; exit 1; }

# Static binaries: glibc's static C runtime, built for the host triple so build scripts stay dynamic.
triple=$(rustc -vV | sed -n 's/^host: //p')
echo "==> building static weft, weft-sidecar and greeter-demo (release, $triple)"
# weft-sidecar is what `weft connect proxy` hands over to: every task's sidecar container runs it.
(cd "$root" && RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --target "$triple" -p weft -p weft-sidecar -p greeter-demo)
target_dir=$(cd "$root" && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin_dir="$target_dir/$triple/release"
for b in "$bin_dir/weft" "$bin_dir/weft-sidecar" "$bin_dir/greeter-demo"; do
  # ldd fails on a static binary, or says "statically linked" for a static PIE.
  if deps=$(ldd "$b" 2>&1) && [[ $deps != *"statically linked"* ]]; then
    echo "build-images: $b is not statically linked" >&2; exit 1
  fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Copies a dynamically linked program and every library ldd lists into a root filesystem.
with_libraries() {
  local rootfs=$1 program=$2 dest=$3
  mkdir -p "$rootfs$(dirname "$dest")"
  cp "$program" "$rootfs$dest"
  ldd "$program" | grep -o '/[^ ]*' | while read -r lib; do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
  done
}

# The files every image shares: a writable /tmp and the users that nginx and curl look up.
base_rootfs() {
  local rootfs=$1
  mkdir -p "$rootfs/tmp" "$rootfs/etc" "$rootfs/data"
  chmod 1777 "$rootfs/tmp"
  printf 'root:x:0:0:root:/:/bin/weft\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
  printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
}

image() {
  local name=$1 dir=$2 log
  log=$(docker build -q -t "weft-local/$name:latest" "$dir" 2>&1) || { echo "$log" >&2; exit 1; }
}

# Copies a binary without its symbol tables (a third of weft's size), or as it is when strip is missing.
copy_stripped() {
  strip -o "$2" "$1" 2>/dev/null || cp "$1" "$2"
}

echo "==> weft-local/weft"
r="$work/weft/rootfs"
base_rootfs "$r"
mkdir -p "$r/bin"
copy_stripped "$bin_dir/weft" "$r/bin/weft"
copy_stripped "$bin_dir/weft-sidecar" "$r/bin/weft-sidecar"
with_libraries "$r" "$(command -v curl)" /bin/curl
printf 'FROM scratch\nCOPY rootfs/ /\nENV PATH=/bin\nENTRYPOINT ["/bin/weft"]\n' >"$work/weft/Dockerfile"
image weft "$work/weft"

echo "==> weft-local/greeter"
r="$work/greeter/rootfs"
base_rootfs "$r"
mkdir -p "$r/bin"
copy_stripped "$bin_dir/greeter-demo" "$r/bin/greeter-demo"
printf 'FROM scratch\nCOPY rootfs/ /\nENV PATH=/bin\nENTRYPOINT ["/bin/greeter-demo"]\n' >"$work/greeter/Dockerfile"
image greeter "$work/greeter"

echo "==> weft-local/nginx"
r="$work/nginx/rootfs"
base_rootfs "$r"
with_libraries "$r" "$nginx_bin" /usr/sbin/nginx
mkdir -p "$r/etc/nginx" "$r/var/log/nginx" "$r/var/lib/nginx" "$r/tmp/nginx"
chmod 1777 "$r/tmp/nginx"
cp "$here/nginx/nginx.conf" "$r/etc/nginx/nginx.conf"
printf 'FROM scratch\nCOPY rootfs/ /\nENTRYPOINT ["/usr/sbin/nginx", "-c", "/etc/nginx/nginx.conf"]\n' >"$work/nginx/Dockerfile"
image nginx "$work/nginx"

echo "==> images"
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep '^weft-local/' | sort | sed 's/^/    /'
