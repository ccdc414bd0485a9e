#!/usr/bin/env bash
# Fetches Mesa's software Vulkan driver (lavapipe, Mesa 25 from Debian's
# bookworm-backports; bookworm's own 22.3 is refused by LiteRT's GPU
# accelerator) and the Vulkan loader into DIR, without installing anything
# into / or changing the system's apt sources. Then LiteRT's GPU accelerator
# runs on a machine without a GPU:
#
#   bash .ci/fetch_lavapipe.sh ~/.cache/lavapipe && export LAVAPIPE_DIR=~/.cache/lavapipe
#
# (keras_defusion.runtimes.use_lavapipe reads LAVAPIPE_DIR.) Idempotent.
set -euo pipefail
dest=${1:?usage: $0 DIR}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
lib=$dest/root/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
[ -f "$dest/lvp_icd.json" ] && exit 0

apt_dir=$dest/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
for suite in bookworm bookworm-updates bookworm-backports; do
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main"
done > "$apt_dir/sources.list"
# Private sources, lists and cache; apt still reads the system's package
# status, so it fetches only what this system lacks (and libdrm >= 2.4.121).
apt_options=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o "Dir::Etc::sourceparts=-"
             -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
             -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache="
             -o "Debug::NoLocking=1" -o "APT::Sandbox::User=$(id -un)")
apt-get "${apt_options[@]}" -qq update
apt-get "${apt_options[@]}" -qq -y --download-only --no-install-recommends \
  install mesa-vulkan-drivers/bookworm-backports libvulkan1 >/dev/null
for deb in "$apt_dir"/cache/archives/*.deb; do dpkg -x "$deb" "$dest/root"; done
rm -rf "$apt_dir"
if LD_LIBRARY_PATH=$lib ldd "$lib/libvulkan_lvp.so" | grep "not found"; then
  echo "lavapipe: libraries above are missing" >&2; exit 1
fi
# The package's manifest names the library without a path.
sed "s#\"library_path\": *\"[^\"]*\"#\"library_path\": \"$lib/libvulkan_lvp.so\"#" \
  "$dest/root/usr/share/vulkan/icd.d/lvp_icd.json" > "$dest/lvp_icd.json.tmp"
mv "$dest/lvp_icd.json.tmp" "$dest/lvp_icd.json"
