#!/usr/bin/env bash
# The vendored foca fork as ordered patches on pristine foca 2.0.0 (vendor/foca-patches/).
#
#   vendor/foca-patches.sh check        vendor/foca == pristine foca 2.0.0 + every patch, in order
#                                       (CI runs this; exit 1 and a diff when they differ)
#   vendor/foca-patches.sh apply DIR    writes pristine + patches to DIR (must not exist)
#   vendor/foca-patches.sh add NAME     after editing vendor/foca: records what differs from
#                                       pristine + patches as the next patch, NNNN-NAME.patch
#   vendor/foca-patches.sh pristine DIR writes the pristine crate to DIR
#
# The pristine crate comes from cargo's registry cache (~/.cargo/registry) when it is there,
# else from static.crates.io; either way its SHA-256 is checked against the one pinned here.
# Patches are plain unified diffs (`git apply -p1` from the crate's root), so each one can be
# read, reordered or proposed upstream on its own.
set -euo pipefail

VERSION=2.0.0
SHA256=cfdf03bd44a0044a679493054cf0a78696bcb8dc4140dadaa350af0a04b3bbe1
URL="https://static.crates.io/crates/foca/foca-${VERSION}.crate"

here="$(cd "$(dirname "$0")" && pwd)"
fork="$here/foca"
patches="$here/foca-patches"
# Generated files that are not part of the fork.
EXCLUDES=(--exclude=target --exclude=Cargo.lock)

die() { echo "foca-patches: $*" >&2; exit 1; }

# Copies the verified .crate file to $1.
fetch_crate() {
    local out="$1" c
    for c in "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/foca-"$VERSION".crate; do
        if [ -f "$c" ] && echo "$SHA256  $c" | sha256sum -c --status; then
            cp "$c" "$out"
            return
        fi
    done
    command -v curl >/dev/null || die "foca-$VERSION.crate is not in cargo's cache and curl is missing"
    curl -sSfL --retry 2 -o "$out" "$URL" || die "cannot download $URL"
    echo "$SHA256  $out" | sha256sum -c --status || die "checksum mismatch for $URL"
}

# Writes the pristine crate's files to $1 (created).
pristine() {
    local dest="$1" tmp
    tmp="$(mktemp -d)"
    fetch_crate "$tmp/foca.crate"
    tar xzf "$tmp/foca.crate" -C "$tmp"
    mkdir -p "$dest"
    cp -a "$tmp/foca-$VERSION/." "$dest/"
    rm -rf "$tmp"
}

# Writes pristine + every patch, in order, to $1 (created).
apply_all() {
    local dest="$1" p
    pristine "$dest"
    shopt -s nullglob
    for p in "$patches"/[0-9][0-9][0-9][0-9]-*.patch; do
        (cd "$dest" && git apply -p1 --whitespace=nowarn "$p") || die "$(basename "$p") does not apply"
    done
}

# Unified diff from directory $1 to $2 with paths a/… b/… relative to each (no output: same).
tree_diff() {
    local a="$1" b="$2" tmp
    tmp="$(mktemp -d)"
    mkdir -p "$tmp/a" "$tmp/b"
    (cd "$a" && tar cf - "${EXCLUDES[@]}" .) | tar xf - -C "$tmp/a"
    (cd "$b" && tar cf - "${EXCLUDES[@]}" .) | tar xf - -C "$tmp/b"
    # Directories named a and b, empty prefixes: paths read a/src/x and b/src/x.
    (cd "$tmp" && git -c core.quotepath=off diff --no-index --binary --src-prefix= --dst-prefix= a b) || true
    rm -rf "$tmp"
}

cmd="${1:-}"
case "$cmd" in
    check)
        out="$(mktemp -d)"
        apply_all "$out/foca"
        d="$(tree_diff "$out/foca" "$fork")"
        rm -rf "$out"
        if [ -n "$d" ]; then
            echo "$d" | head -200
            die "vendor/foca differs from pristine foca $VERSION + vendor/foca-patches (record the change with: vendor/foca-patches.sh add NAME)"
        fi
        n=$(find "$patches" -name '[0-9][0-9][0-9][0-9]-*.patch' | wc -l)
        echo "vendor/foca == pristine foca $VERSION + $n patches"
        ;;
    apply)
        [ -n "${2:-}" ] || die "usage: $0 apply DIR"
        [ ! -e "$2" ] || die "$2 exists"
        apply_all "$2"
        echo "wrote pristine foca $VERSION + patches to $2"
        ;;
    pristine)
        [ -n "${2:-}" ] || die "usage: $0 pristine DIR"
        [ ! -e "$2" ] || die "$2 exists"
        pristine "$2"
        ;;
    add)
        name="${2:-}"
        [[ "$name" =~ ^[a-z0-9][a-z0-9-]*$ ]] || die "usage: $0 add NAME (lowercase, digits, dashes)"
        out="$(mktemp -d)"
        apply_all "$out/foca"
        d="$(tree_diff "$out/foca" "$fork")"
        rm -rf "$out"
        [ -n "$d" ] || die "vendor/foca already equals pristine + patches: nothing to add"
        last=$(find "$patches" -name '[0-9][0-9][0-9][0-9]-*.patch' -printf '%f\n' | sort | tail -1 | cut -c1-4)
        next=$(printf '%04d' $((10#${last:-0} + 1)))
        printf '%s\n' "$d" >"$patches/$next-$name.patch"
        echo "wrote vendor/foca-patches/$next-$name.patch; describe it in vendor/README.md"
        ;;
    *)
        sed -n '2,14p' "$0"
        exit 2
        ;;
esac
