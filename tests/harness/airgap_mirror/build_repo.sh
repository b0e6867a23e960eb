#!/usr/bin/env bash
# Runs inside the inferops/airgap-mirror image (tests/harness/airgap_mirror.sh starts it): builds the
# stand-in packages with dpkg-deb and the repositories in the vendors' layouts under /out/www,
# signed with a test key made once (/key/gnupg, kept when the repositories are rebuilt; public key
# /out/www/inferops-test-mirror.asc, fingerprint /out/fingerprint).
#   compute/cuda/repos/debian{12,13}/x86_64/   NVIDIA's CUDA repository: flat (suite "/"), so
#                                              apt-ftparchive (apt-utils) writes it
#   linux/debian/dists/{bookworm,trixie}/stable Docker's repository: a dists/ tree (apt-ftparchive,
#                                              every version kept, files in dists/<codename>/pool/)
#   libnvidia-container/stable/deb/amd64/      NVIDIA's container toolkit: flat, apt-ftparchive
# Every stand-in says in its Description that it is one; none contains NVIDIA's or Docker's code.
# Usage: build_repo.sh            (everything, into an empty /out)
#        build_repo.sh driver V   (publish one more driver release V into both CUDA repositories)
set -euo pipefail
OUT=/out
WWW="$OUT/www"
DEBS="$OUT/debs"
export GNUPGHOME=/key/gnupg
NOTE="Test stand-in built by the inferops.gpu test harness: not the vendor's package, it only has the
 vendor's name, version and dependency shape (and the files the roles check)."

# deb NAME VERSION ARCH DEPENDS [KEY: VALUE lines] -- payload from $PAYLOAD (a directory, may be empty)
deb() {
  local name="$1" version="$2" arch="$3" depends="$4" extra="${5:-}" dir
  dir="$(mktemp -d)"
  cp -a "$PAYLOAD/." "$dir/" 2>/dev/null || true
  mkdir -p "$dir/DEBIAN" "$dir/usr/share/doc/$name"
  printf 'Test stand-in of %s %s (inferops.gpu test harness).\n' "$name" "$version" >"$dir/usr/share/doc/$name/README.stand-in"
  {
    echo "Package: $name"
    echo "Version: $version"
    echo "Architecture: $arch"
    echo "Maintainer: inferops.gpu test harness <harness@inferops.invalid>"
    echo "Section: misc"
    echo "Priority: optional"
    [ -n "$depends" ] && echo "Depends: $depends"
    [ -n "$extra" ] && printf '%s\n' "$extra"
    echo "Description: $name (test stand-in)"
    echo " $NOTE"
    if [ -n "$NOTE_MORE" ]; then echo " $NOTE_MORE"; fi
  } >"$dir/DEBIAN/control"
  mkdir -p "$DEBS/$REPO"
  # The file name drops the epoch, as the vendors' do.
  dpkg-deb --root-owner-group -Z"$COMPRESS" -z1 --build "$dir" "$DEBS/$REPO/${name}_${version#*:}_${arch}.deb" >/dev/null
  rm -rf "$dir"
  PAYLOAD=/nonexistent NOTE_MORE='' COMPRESS=gzip
}
# zstd (dpkg 1.21.18+, Debian 12 and 13) for the repackaged engine: gzip takes minutes for its 200 MB.
PAYLOAD=/nonexistent NOTE_MORE='' COMPRESS=gzip

payload() { PAYLOAD="$(mktemp -d)"; }
file_in() {  # file_in PATH MODE CONTENT
  mkdir -p "$PAYLOAD/$(dirname "$1")"
  printf '%s\n' "$3" >"$PAYLOAD/$1"
  chmod "$2" "$PAYLOAD/$1"
}

driver() {  # driver VERSION (e.g. 550.127.08-1): the Debian-named driver packages of the CUDA repository
  local v="$1" u="${1%-*}" b="${1%%.*}"
  deb libcuda1 "$v" amd64 ""
  deb libnvidia-ml1 "$v" amd64 ""
  deb nvidia-kernel-dkms "$v" amd64 ""
  payload; file_in usr/bin/nvidia-smi 0755 "#!/bin/sh
# Test stand-in: prints the version it stands for; there is no GPU and no kernel module.
echo 'NVIDIA-SMI $u    Driver Version: $u    (inferops.gpu test stand-in, no GPU)'"
  deb nvidia-smi "$v" amd64 ""
  payload; file_in lib/systemd/system/nvidia-persistenced.service 0644 "[Unit]
Description=NVIDIA Persistence Daemon (inferops.gpu test stand-in)
ConditionPathExists=/proc/driver/nvidia/version
[Service]
Type=oneshot
ExecStart=/bin/true
[Install]
WantedBy=multi-user.target"
  deb nvidia-persistenced "$v" amd64 ""
  payload; file_in usr/share/nvidia/driver.version 0644 "$u"
  deb nvidia-driver "$v" amd64 \
    "nvidia-kernel-dkms (= $v), nvidia-smi (= $v), libnvidia-ml1 (= $v), libcuda1 (= $v), nvidia-persistenced (>= $b)"
  # As NVIDIA's: lower bounds only (apt takes the newest branch unless a pin says otherwise).
  deb "cuda-drivers-$b" "$v" amd64 \
    "nvidia-driver (>= $u), nvidia-kernel-dkms (>= $u), nvidia-smi (>= $u), libnvidia-ml1 (>= $u), libcuda1 (>= $u), nvidia-persistenced (>= $u)"
  deb cuda-drivers "$v" amd64 "cuda-drivers-$b (= $v)"
  deb "nvidia-fabricmanager-$b" "$v" amd64 "nvidia-driver (>= $u)"
}

toolkit() {  # toolkit VERSION (e.g. 12.4.1-1)
  local v="$1" u="${1%-*}" r="${1%.*}" d
  r="${u%.*}"; d="${r/./-}"
  payload
  file_in "usr/local/cuda-$r/version.json" 0644 "{\"cuda\": {\"name\": \"CUDA SDK\", \"version\": \"$u\"}, \"note\": \"inferops.gpu test stand-in\"}"
  file_in "usr/local/cuda-$r/bin/nvcc" 0755 "#!/bin/sh
echo 'nvcc: NVIDIA (R) Cuda compiler driver (inferops.gpu test stand-in)'
echo 'Cuda compilation tools, release $r, V$u'"
  mkdir -p "$PAYLOAD/usr/local/cuda-$r/lib64"
  deb "cuda-toolkit-$d" "$v" amd64 ""
  deb cuda-toolkit "$v" amd64 "cuda-toolkit-$d (>= $u)"
  deb "cuda-$d" "$v" amd64 "cuda-toolkit-$d (>= $u), cuda-drivers (>= 550.54.14)"
}

nccl() {  # nccl VERSION (e.g. 2.21.5-1+cuda12.4)
  local v="$1" u="${1%%-*}" maj min pat
  IFS=. read -r maj min pat <<<"$u"
  deb libnccl2 "$v" amd64 ""
  payload; file_in usr/include/nccl.h 0644 "/* inferops.gpu test stand-in */
#define NCCL_MAJOR $maj
#define NCCL_MINOR $min
#define NCCL_PATCH $pat"
  deb libnccl-dev "$v" amd64 "libnccl2 (= $v)"
}

flat() {  # flat DIR LABEL ORIGIN: index and sign a flat repository as NVIDIA's generator lays it out
  local dir="$1" label="$2" origin="$3"
  cp "$DEBS/$REPO"/*.deb "$dir/"
  (
    cd "$dir"
    apt-ftparchive packages . >Packages
    gzip -9nkf Packages
    apt-ftparchive -o "APT::FTPArchive::Release::Origin=$origin" -o "APT::FTPArchive::Release::Label=$label" \
      -o APT::FTPArchive::Release::Architectures=amd64 release . >../Release.new
    mv ../Release.new Release
    gpg --batch --yes --clearsign -o InRelease Release
    gpg --batch --yes --armor --detach-sign -o Release.gpg Release
  )
}

cuda_repos() {
  local distro
  for distro in debian12 debian13; do
    mkdir -p "$WWW/compute/cuda/repos/$distro/x86_64"
    flat "$WWW/compute/cuda/repos/$distro/x86_64" "NVIDIA CUDA" NVIDIA
  done
}

if [ "${1:-}" = driver ]; then
  REPO=cuda
  driver "$2"
  cuda_repos
  exit 0
fi

rm -rf "${OUT:?}"/*
mkdir -p "$WWW"
if [ ! -d "$GNUPGHOME" ]; then
  mkdir -p "$GNUPGHOME.new"
  chmod 700 "$GNUPGHOME.new"
  GNUPGHOME="$GNUPGHOME.new" gpg --batch --passphrase '' --quick-gen-key \
    'inferops test mirror <mirror@inferops.invalid>' ed25519 sign never 2>/dev/null
  # The agent of the temporary home would answer from the moved directory without its keys.
  GNUPGHOME="$GNUPGHOME.new" gpgconf --kill gpg-agent
  rm -f "$GNUPGHOME.new"/S.*
  mv "$GNUPGHOME.new" "$GNUPGHOME"
fi
fpr="$(gpg --with-colons --fingerprint | awk -F: '$1 == "fpr" {print $10; exit}')"
gpg --batch --armor --export >"$WWW/inferops-test-mirror.asc"
echo "$fpr" >"$OUT/fingerprint"

# NVIDIA's CUDA repository (the same stand-ins in debian12 and debian13).
REPO=cuda
deb cuda-keyring 1.1-1 all ""
for v in 550.54.15-1 550.127.08-1 570.124.06-1; do driver "$v"; done
for v in 12.4.0-1 12.4.1-1 12.6.3-1; do toolkit "$v"; done
for v in 2.21.5-1+cuda12.4 2.22.3-1+cuda12.4 2.22.3-1+cuda12.6; do nccl "$v"; done
cuda_repos

# NVIDIA's container toolkit repository.
REPO=nvidia-container-toolkit
for v in 1.17.3-1 1.17.4-1; do
  u="${v%-*}"
  deb libnvidia-container1 "$v" amd64 "libc6, libcap2, libseccomp2" "Multi-Arch: same"
  deb libnvidia-container-tools "$v" amd64 "libc6, libnvidia-container1 (>= $u)"
  payload; file_in usr/bin/nvidia-ctk 0755 "#!/bin/sh
# Test stand-in: the version; the runtime configuration is the role's job (daemon.json).
case \"\$1\" in --version|-v) echo 'NVIDIA Container Toolkit CLI version $u (inferops.gpu test stand-in)' ;; *) echo 'nvidia-ctk stand-in: '\"\$*\"' not implemented' >&2; exit 1 ;; esac"
  deb nvidia-container-toolkit-base "$v" amd64 ""
  # A runtime docker can really use: it is runc (no GPU to inject here).
  payload; file_in usr/bin/nvidia-container-runtime 0755 '#!/bin/sh
# inferops.gpu test stand-in: runs containers with runc (there is no GPU to inject).
exec runc "$@"'
  deb nvidia-container-toolkit "$v" amd64 \
    "nvidia-container-toolkit-base (= $v), libnvidia-container-tools (>= $v), libnvidia-container-tools (<< 2.0.0)" \
    "Breaks: nvidia-container-runtime (<= 3.5.0-1), nvidia-container-runtime-hook
Replaces: nvidia-container-runtime (<= 3.5.0-1), nvidia-container-runtime-hook"
done
mkdir -p "$WWW/libnvidia-container/stable/deb/amd64"
flat "$WWW/libnvidia-container/stable/deb/amd64" "NVIDIA CORPORATION <cudatools@nvidia.com>" \
  "https://nvidia.github.io/libnvidia-container/stable"

# repackaged DIR SRC...: a payload of Debian's real packages (/opt/standin-src, see the Dockerfile):
# their files and maintainer scripts (which create the docker group, enable and start the units),
# kept in DIR for the versions that reuse it; the control file is the stand-in's own (deb).
repackaged() {
  local dir="$1" src; shift
  if [ ! -d "$dir" ]; then
    mkdir -p "$dir/DEBIAN"
    for src in "$@"; do dpkg-deb -x "/opt/standin-src/$src.deb" "$dir"; done
    dpkg-deb -e "/opt/standin-src/$1.deb" "$dir/DEBIAN.src"
    find "$dir/DEBIAN.src" -maxdepth 1 -type f ! -name control ! -name md5sums -exec mv -t "$dir/DEBIAN" {} +
    rm -rf "$dir/DEBIAN.src"
  fi
  PAYLOAD="$dir" COMPRESS=zstd
  NOTE_MORE="Its files are those of Debian's $* (a real engine runs from it), under Docker's names."
}

# Docker's repository: dists/<codename>/stable with the files in dists/<codename>/pool/stable/amd64/,
# as Docker lays it out, every version kept (reprepro keeps only the newest of a package in a
# distribution, so apt-ftparchive writes this one too).
docker_repo() {  # docker_repo CODENAME: index and sign from $DEBS/docker-CODENAME and docker-common
  local c="$1" top="$WWW/linux/debian"
  mkdir -p "$top/dists/$c/pool/stable/amd64" "$top/dists/$c/stable/binary-amd64"
  cp "$DEBS/docker-$c"/*.deb "$DEBS/docker-common"/*.deb "$top/dists/$c/pool/stable/amd64/"
  (
    cd "$top"
    apt-ftparchive packages "dists/$c/pool/stable/amd64" >"dists/$c/stable/binary-amd64/Packages"
    gzip -9nkf "dists/$c/stable/binary-amd64/Packages"
    apt-ftparchive -o APT::FTPArchive::Release::Origin=Docker -o "APT::FTPArchive::Release::Label=Docker CE" \
      -o "APT::FTPArchive::Release::Suite=$c" -o "APT::FTPArchive::Release::Codename=$c" \
      -o APT::FTPArchive::Release::Architectures=amd64 -o APT::FTPArchive::Release::Components=stable \
      release "dists/$c" >"dists/$c/Release.new"
    mv "dists/$c/Release.new" "dists/$c/Release"
    gpg --batch --yes --clearsign -o "dists/$c/InRelease" "dists/$c/Release"
    gpg --batch --yes --armor --detach-sign -o "dists/$c/Release.gpg" "dists/$c/Release"
  )
}

# The dependency shape of Docker's packages: containerd.io brings containerd and runc and takes
# the place of Debian's; docker-ce and docker-ce-cli conflict with docker.io (the role removes it
# first). docker-ce carries docker-init (tini-static) itself, as Docker's does.
# containerd.io has the same version on every release: one file for both.
REPO=docker-common
SRC=/tmp/standin-tree
repackaged "$SRC/containerd.io" containerd runc
deb containerd.io 1.7.27-1 amd64 "libc6 (>= 2.34), libseccomp2 (>= 2.5.0)" \
  "Conflicts: containerd, runc
Replaces: containerd, runc
Provides: containerd, runc"
if [ ! -d "$SRC/docker-ce" ]; then
  repackaged "$SRC/docker-ce" docker.io tini
  rm -f "$SRC/docker-ce/usr/bin/docker-init" "$SRC/docker-ce/usr/bin/tini"
  mv "$SRC/docker-ce/usr/bin/tini-static" "$SRC/docker-ce/usr/bin/docker-init"
fi
for pair in 12:bookworm 13:trixie; do
  n="${pair%%:*}" c="${pair#*:}" REPO="docker-$c"
  for ver in 27.3.1 27.5.1; do
    s="-1~debian.$n~$c"
    repackaged "$SRC/docker-ce" docker.io tini
    deb docker-ce "5:$ver$s" amd64 \
      "containerd.io (>= 1.6.24), docker-ce-cli, iptables, libseccomp2 (>= 2.3.0), libc6 (>= 2.34), libsystemd0, adduser" \
      "Recommends: ca-certificates, docker-ce-rootless-extras, xz-utils
Conflicts: docker (<< 1.5~), docker-engine, docker.io
Replaces: docker-engine"
    repackaged "$SRC/docker-ce-cli" docker-cli
    deb docker-ce-cli "5:$ver$s" amd64 "libc6 (>= 2.34)" \
      "Recommends: docker-buildx-plugin, docker-compose-plugin
Conflicts: docker (<< 1.5~), docker-engine, docker.io
Replaces: docker-ce (<< 5:0), docker-engine"
    deb docker-ce-rootless-extras "5:$ver$s" amd64 ""
  done
  deb docker-buildx-plugin "0.19.3$s" amd64 ""
  deb docker-compose-plugin "2.32.1$s" amd64 ""
  docker_repo "$c"
done
echo "built; signing key $fpr"
