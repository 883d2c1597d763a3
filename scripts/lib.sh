# Shared helpers of every lichen script (sourced, not run): scripts/*, scripts/bench.d/*,
# xen/fetch, xen/mkinitramfs, xen/fixtures/build, xen/dom0/bench/build.

# Repository root, and the Xen platform's cache.
LICHEN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
XEN_OUT="$LICHEN_ROOT/target/xen"

die() { echo "$(basename "$0"): $*" >&2; exit 2; }

# Runs a command as root (directly, or through sudo when available).
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "need root to run: $*"; fi
}

# Installs the Debian packages providing missing commands: need command:package ...
need() {
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "$(basename "$0"): installing ${missing[*]}" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
        || { as_root apt-get update -qq >/dev/null 2>&1 \
             && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; } \
        || die "could not install ${missing[*]}; install them by hand"
}

# Makes sure the unikernel target is installed.
need_target() {
    rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-none && return 0
    echo "installing the x86_64-unknown-none target..." >&2
    rustup target add x86_64-unknown-none >/dev/null || die "rustup target add x86_64-unknown-none failed"
}

# Where unikernel image crates live: pillars and drivers, then test and bench images.
LICHEN_IMAGE_DIRS=(services tests/images)

# Prints the name of every unikernel image: each crate in LICHEN_IMAGE_DIRS with a src/main.rs
# (the image is named after the crate's directory, which is its package name) and each
# src/bin/<image>.rs of such a crate (one crate, several images: ping and pong).
lichen_images() {
    local parent dir bin
    for parent in "${LICHEN_IMAGE_DIRS[@]}"; do
        for dir in "$LICHEN_ROOT/$parent"/*/; do
            [ -f "$dir/Cargo.toml" ] || continue
            [ -f "$dir/src/main.rs" ] && basename "$dir"
            for bin in "$dir"/src/bin/*.rs; do
                [ -f "$bin" ] && basename "$bin" .rs
            done
        done
    done
    return 0
}

# Prints the crate directory of image $1, or nothing when there is no such image.
lichen_image_dir() {
    local parent dir
    for parent in "${LICHEN_IMAGE_DIRS[@]}"; do
        [ -f "$LICHEN_ROOT/$parent/$1/src/main.rs" ] && { echo "$LICHEN_ROOT/$parent/$1"; return 0; }
        for dir in "$LICHEN_ROOT/$parent"/*/; do
            [ -f "$dir/src/bin/$1.rs" ] && { echo "${dir%/}"; return 0; }
        done
    done
    return 0
}

# Prints the package of image $1 (its crate directory's name).
lichen_image_package() {
    basename "$(lichen_image_dir "$1")"
}

# Prints the name of every image crate with a `[lib]` target: its pure parts are tested on the host.
lichen_host_testable_images() {
    local image
    for image in $(lichen_images); do
        grep -q '^\[lib\]' "$(lichen_image_dir "$image")/Cargo.toml" && lichen_image_package "$image"
    done | sort -u
    return 0
}

# Whether KVM can run guests here.
kvm_usable() {
    [ -r /dev/kvm ] && [ -w /dev/kvm ]
}

# Builds the launcher as a static binary (glibc, crt-static: no rustup target to download) and
# prints its path. lichen-udp-peer (xen/dom0/peer, the test hooks' UDP peers) is built beside it.
build_launcher() {
    local target=x86_64-unknown-linux-gnu
    (cd "$LICHEN_ROOT" && RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --quiet --release -p lichen-launcher -p lichen-dom0-peer --target "$target") >&2 \
        || die "cannot build lichen-launcher"
    echo "$LICHEN_ROOT/target/$target/release/lichen-launcher"
}

# Fetches Xen and builds the dom0 initramfs; prints the launcher's path.
prepare_dom0() {
    local launcher
    "$LICHEN_ROOT/xen/fetch" >&2
    launcher=$(build_launcher)
    "$LICHEN_ROOT/xen/mkinitramfs" "$launcher" >&2
    echo "$launcher"
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

# Prints the path of a Debian package file matching GLOB in DIR (or target/xen/debs), after
# downloading PACKAGE into DIR with `apt-get download` if there is none: fetch_deb DIR GLOB PACKAGE
fetch_deb() {
    local dir=$1 glob=$2 pkg=$3 found
    found=$(ls "$dir"/$glob "$XEN_OUT"/debs/$glob 2>/dev/null | head -1 || true)
    if [ -z "$found" ]; then
        (cd "$dir" && apt-get download "$pkg" >/dev/null 2>&1) || die "apt-get download $pkg failed"
        found=$(ls "$dir"/$glob | head -1)
    fi
    echo "$found"
}
