#!/usr/bin/env bash
# Builds the local systemd base images the Molecule scenarios run on:
#   inferops/debian:12 (bookworm) and inferops/debian:13 (trixie).
# No registry is reachable, so the images are bootstrapped with mmdebstrap from Debian's
# default mirror (none is named here) and imported into the local engine.
#
# The recipe is this file plus tests/images/packages.txt. Its hash is stored in the image
# label `inferops.recipe`; an image is rebuilt only when it is absent or its label differs.
#
# Usage: tests/images/build.sh [--force] [12] [13]     (default: both, built in parallel)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
LOGS="$ROOT/.cache/logs"
WORK="$ROOT/.cache/images"
REPO="${INFEROPS_IMAGE_REPO:-inferops/debian}"
mkdir -p "$LOGS" "$WORK"

force=0
versions=()
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    12|13) versions+=("$arg") ;;
    *) echo "usage: $0 [--force] [12] [13]" >&2; exit 2 ;;
  esac
done
[ "${#versions[@]}" -eq 0 ] && versions=(12 13)

suite_of() {
  case "$1" in
    12) echo bookworm ;;
    13) echo trixie ;;
  esac
}

# Packages every image gets: the Molecule/testinfra needs plus what our roles' tests commonly use.
packages="$(grep -v -e '^\s*#' -e '^\s*$' "$HERE/packages.txt" | tr -s ' \n' ',' | sed 's/,$//')"

recipe_hash() {  # hash of everything that defines image $1
  { cat "$HERE/build.sh" "$HERE/packages.txt"; echo "suite=$(suite_of "$1")"; } | sha256sum | cut -c1-16
}

current_label() {
  docker image inspect -f '{{ index .Config.Labels "inferops.recipe" }}' "$1" 2>/dev/null || true
}

build_one() {  # build_one VERSION HASH ; output goes to the caller's log file
  local version="$1" hash="$2" suite tar
  suite="$(suite_of "$version")"
  tar="$WORK/debian-$version.tar"
  rm -f "$tar"
  # customize hooks, run on the finished tree ($1 is its root):
  #  - keep downloaded .deb files: the test hosts share the controller's archive directory
  #    (.cache/apt-archives), so a package is downloaded once per machine, not once per host;
  #  - mask systemd-modules-load (no kernel modules can load in a container), so an idle host
  #    reaches state "running" instead of "degraded";
  #  - keep the package lists (--skip=cleanup/apt/lists), as an installed system has them: a
  #    role using apt's cache_valid_time would otherwise skip the update on a fresh image
  #    and find no packages at all;
  #  - on Debian 13, write the sources in deb822 form (/etc/apt/sources.list.d/debian.sources)
  #    as a Debian 13 installation has them, derived from the list mmdebstrap wrote.
  # The hooks are single-quoted on purpose: mmdebstrap's own shell expands "$1" (the new root).
  # shellcheck disable=SC2016
  mmdebstrap \
    --variant=apt \
    --skip=cleanup/apt/lists \
    --include="$packages" \
    --customize-hook='printf "%s\n" "APT::Keep-Downloaded-Packages \"true\";" "Binary::apt::APT::Keep-Downloaded-Packages \"true\";" > "$1/etc/apt/apt.conf.d/99keep-downloaded-packages"' \
    --customize-hook='rm -f "$1/etc/apt/apt.conf.d/docker-clean"' \
    --customize-hook='ln -sf /dev/null "$1/etc/systemd/system/systemd-modules-load.service"' \
    --customize-hook='if [ '"$version"' -ge 13 ] && [ -s "$1/etc/apt/sources.list" ]; then
        awk '\''$1 == "deb" { printf "%sTypes: deb\nURIs: %s\nSuites: %s\nComponents:", (n++ ? "\n" : ""), $2, $3;
                              for (i = 4; i <= NF; i++) printf " %s", $i;
                              printf "\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n" }'\'' \
          "$1/etc/apt/sources.list" > "$1/etc/apt/sources.list.d/debian.sources" && rm "$1/etc/apt/sources.list"; fi' \
    --customize-hook='rm -f "$1/etc/hostname" "$1/etc/machine-id" && touch "$1/etc/machine-id"' \
    "$suite" "$tar"
  docker import \
    --change 'CMD ["/lib/systemd/systemd"]' \
    --change 'ENV container=docker' \
    --change "LABEL inferops.recipe=$hash inferops.suite=$suite" \
    "$tar" "$REPO:$version"
  rm -f "$tar"
}

# One build at a time per machine (two `make` runs may start together).
exec 9>"$WORK/.lock"
flock 9

declare -A pids=() starts=()
for v in "${versions[@]}"; do
  hash="$(recipe_hash "$v")"
  have="$(current_label "$REPO:$v")"
  if [ "$force" = 0 ] && [ "$have" = "$hash" ]; then
    echo "    $REPO:$v up to date (recipe $hash)"
    continue
  fi
  if [ -n "$have" ]; then
    echo "    $REPO:$v recipe changed ($have -> $hash): rebuilding (log: .cache/logs/image-debian-$v.log)"
  else
    echo "    $REPO:$v absent: building (log: .cache/logs/image-debian-$v.log)"
  fi
  build_one "$v" "$hash" >"$LOGS/image-debian-$v.log" 2>&1 &
  pids[$v]=$!
  starts[$v]=$SECONDS
done

failed=0
# Progress: every 15 s, one line per running build with its elapsed time and latest log line.
while [ "${#pids[@]}" -gt 0 ]; do
  for v in "${!pids[@]}"; do
    if ! kill -0 "${pids[$v]}" 2>/dev/null; then
      if wait "${pids[$v]}"; then
        echo "    $REPO:$v built in $((SECONDS - starts[$v]))s"
      else
        echo "    $REPO:$v FAILED after $((SECONDS - starts[$v]))s; last lines of .cache/logs/image-debian-$v.log:" >&2
        tail -n 20 "$LOGS/image-debian-$v.log" >&2
        failed=1
      fi
      unset "pids[$v]"
    fi
  done
  [ "${#pids[@]}" -eq 0 ] && break
  for _ in $(seq 15); do
    sleep 1
    for v in "${!pids[@]}"; do kill -0 "${pids[$v]}" 2>/dev/null || break 2; done
  done
  for v in "${!pids[@]}"; do
    if kill -0 "${pids[$v]}" 2>/dev/null; then
      last="$(tail -n 1 "$LOGS/image-debian-$v.log" 2>/dev/null | tr -d '\r' | cut -c1-90)"
      echo "    ... $REPO:$v $((SECONDS - starts[$v]))s: $last"
    fi
  done
done
exit "$failed"
