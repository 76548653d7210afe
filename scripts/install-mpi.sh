#!/usr/bin/env bash
# Installs what `cargo build --features mpi` needs: an MPI library with its compiler wrapper
# (MPICH: mpicc, mpirun) and libclang (bindgen, used by the `mpi-sys` crate).
# Idempotent: installs nothing when mpicc, mpirun and libclang are already present.
# Debian/Ubuntu (apt-get); run as root or with sudo available.
# Usage: bash scripts/install-mpi.sh
set -euo pipefail

have_libclang() {
    # bindgen finds libclang through LIBCLANG_PATH, or the usual library directories.
    if [[ -n "${LIBCLANG_PATH:-}" ]] && compgen -G "${LIBCLANG_PATH}/libclang*.so*" >/dev/null; then
        return 0
    fi
    # (libclang-cpp is a different library: it does not count.)
    local pattern
    for pattern in "/usr/lib/llvm-*/lib/libclang.so*" "/usr/lib/llvm-*/lib/libclang-[0-9]*.so*" \
        "/usr/lib/*/libclang.so*" "/usr/lib/*/libclang-[0-9]*.so*" "/usr/lib64/libclang.so*"; do
        compgen -G "$pattern" >/dev/null && return 0
    done
    return 1
}

missing=()
command -v mpicc >/dev/null 2>&1 || missing+=("mpicc")
command -v mpirun >/dev/null 2>&1 || command -v mpiexec >/dev/null 2>&1 || missing+=("mpirun")
have_libclang || missing+=("libclang")

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-mpi: MPI and libclang already present ($(command -v mpicc), $(command -v mpirun || command -v mpiexec)); nothing to do"
    exit 0
fi

echo "install-mpi: missing: ${missing[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-mpi: error: no apt-get here; install an MPI library (mpicc, mpirun) and libclang yourself" >&2
    echo "install-mpi: (a cluster's own MPI: set MPICC or MPI_PKG_CONFIG, see README.md, section MPI)" >&2
    exit 1
fi
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "install-mpi: error: not root and no sudo; run as root" >&2
        exit 1
    fi
fi
packages=(mpich libmpich-dev libclang-dev)
echo "install-mpi: apt-get update"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
echo "install-mpi: apt-get install -y --no-install-recommends ${packages[*]}"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}"
echo "install-mpi: installed ${packages[*]}: mpicc $(command -v mpicc), mpirun $(command -v mpirun)"
