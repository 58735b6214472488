#!/usr/bin/env bash
# Builds the binary that ships (the `dist` profile: README, Packaging and "Memory per agent"):
# a static musl binary when the musl target is installed
# (`rustup target add x86_64-unknown-linux-musl`), else the glibc one, with a warning.
#
#   bash packaging/build-dist.sh            # build; prints the binary's path last
#   bash packaging/build-dist.sh --path     # no build: the newest dist binary there is
#   SHOAL_DIST_TARGET=musl|gnu bash packaging/build-dist.sh   # insist on one (musl fails if missing)
#
# Where the binary ends up (under $CARGO_TARGET_DIR, default target/):
#   musl: x86_64-unknown-linux-musl/dist/shoal      glibc: dist/shoal
# benches/cluster_vs_serf.py and benches/rss.sh take the newer of the two.
set -euo pipefail
cd "$(dirname "$0")/.."
tdir="${CARGO_TARGET_DIR:-target}"
musl=x86_64-unknown-linux-musl
musl_bin="$tdir/$musl/dist/shoal"
gnu_bin="$tdir/dist/shoal"

if [ "${1:-}" = "--path" ]; then
    newest=""
    for b in "$musl_bin" "$gnu_bin"; do
        [ -x "$b" ] || continue
        if [ -z "$newest" ] || [ "$b" -nt "$newest" ]; then newest="$b"; fi
    done
    [ -n "$newest" ] || exit 1
    echo "$newest"
    exit 0
fi

musl_installed() { rustup target list --installed 2>/dev/null | grep -qx "$musl"; }
want="${SHOAL_DIST_TARGET:-}"
if [ -z "$want" ]; then
    if musl_installed; then
        want=musl
    else
        echo "build-dist: WARNING: the $musl target is not installed" \
            "(rustup target add $musl): building the glibc binary instead," \
            "which keeps about 2 MB more resident per agent (README, Memory per agent)" >&2
        want=gnu
    fi
fi
case "$want" in
    musl)
        musl_installed || { echo "build-dist: the $musl target is not installed: rustup target add $musl" >&2; exit 1; }
        cargo build --profile dist --locked --bin shoal --target "$musl" >&2
        echo "$musl_bin"
        ;;
    gnu)
        cargo build --profile dist --locked --bin shoal >&2
        echo "$gnu_bin"
        ;;
    *) echo "build-dist: SHOAL_DIST_TARGET must be musl or gnu, not $want" >&2; exit 2 ;;
esac
