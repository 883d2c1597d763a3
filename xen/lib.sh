# Shared helpers of the Xen platform scripts (sourced, not run): xen/fetch, xen/mkinitramfs,
# xen/fixtures/build, scripts/run-xen, scripts/bench.d/xen-boot.

# Repository root and the Xen platform's cache.
LICHEN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
XEN_OUT="$LICHEN_ROOT/target/xen"

die() { echo "$(basename "$0"): $*" >&2; exit 2; }

# Installs the Debian packages providing missing commands: need command:package ...
need() {
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing host packages (${missing[*]}): install them as root"
    echo "$(basename "$0"): installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 \
             && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; } \
        || die "apt-get install ${missing[*]} failed"
}

# Builds the launcher as a static binary (glibc, crt-static: no rustup target to download) and
# prints its path.
build_launcher() {
    local target=x86_64-unknown-linux-gnu
    (cd "$LICHEN_ROOT" && RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --quiet --release -p lichen-launcher --target "$target") >&2 \
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
