# Shared helpers for lichen's scripts (sourced, not run).

# Repository root.
LICHEN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() { echo "$(basename "$0"): $*" >&2; exit 2; }

# Runs a command as root (directly, or through sudo when available).
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "need root to run: $*"; fi
}

# Installs Debian packages that provide the given commands: need_cmd <command> <package>...
need_cmd() {
    local cmd=$1 pkg=$2
    command -v "$cmd" >/dev/null && return 0
    echo "installing $pkg (for $cmd)..." >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null 2>&1 \
        || { as_root apt-get update -qq >/dev/null 2>&1 \
             && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null; } \
        || die "could not install $pkg; install it by hand (it provides $cmd)"
}

# Makes sure the unikernel target is installed.
need_target() {
    rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-none && return 0
    echo "installing the x86_64-unknown-none target..." >&2
    rustup target add x86_64-unknown-none >/dev/null || die "rustup target add x86_64-unknown-none failed"
}

# Prints the name of every unikernel image: each crate under services/ with a src/main.rs.
lichen_images() {
    local dir
    for dir in "$LICHEN_ROOT"/services/*/; do
        [ -f "$dir/src/main.rs" ] && basename "$dir"
    done
    return 0
}

# Whether KVM can run guests here.
kvm_usable() {
    [ -r /dev/kvm ] && [ -w /dev/kvm ]
}

# Installs the Debian package that provides a Python module for /usr/bin/python3:
# need_python_module <module> <package>
need_python_module() {
    local module=$1 pkg=$2
    /usr/bin/python3 -c "import $module" 2>/dev/null && return 0
    echo "installing $pkg (for python module $module)..." >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null 2>&1 \
        || { as_root apt-get update -qq >/dev/null 2>&1 \
             && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null; } \
        || die "could not install $pkg; install it by hand (it provides python module $module)"
}
