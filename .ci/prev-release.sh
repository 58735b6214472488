#!/usr/bin/env bash
# Builds the `shoal` binary of the previous release, for the mixed-version test
# (tests/upgrade.rs, docs/upgrades.md). Prints the binary's path on the last line of stdout.
#
# The release is the tag `v0.1.0` when the clone has it, else its commit (CI's clone may have
# only the branch, never tags). The source comes from `git archive` (no worktree to clean
# up) into target/prev-release/, built there with its own target directory, debug profile,
# only the `shoal` binary; a rerun reuses the binary. When the commit is not in the clone (a
# shallow clone), prints SKIPPED and exits 0 with no path: the test then skips too, unless
# SHOAL_REQUIRE_PREV=1.
#
# Usage: bash .ci/prev-release.sh            # build (or reuse) and print the path
#        SHOAL_PREV_BIN="$(bash .ci/prev-release.sh | tail -1)" cargo test --test upgrade
set -euo pipefail
cd "$(dirname "$0")/.."

# The previous release: v0.1.0, the first release. Bump both when a release is cut.
PREV_TAG="v0.1.0"
PREV_COMMIT="e3fc227c6392e813af87ea44dee0649b99c58fad"

rev="$(git rev-parse --verify -q "${PREV_TAG}^{commit}" 2>/dev/null || true)"
if [ -z "$rev" ]; then
    rev="$PREV_COMMIT"
    echo "tag ${PREV_TAG} not in this clone: using commit ${rev}" >&2
fi
if ! git cat-file -e "${rev}^{commit}" 2>/dev/null; then
    echo "SKIPPED: the previous release ${PREV_TAG} (${rev}) is not in this clone (shallow?):" \
        "fetch it (git fetch --unshallow, or git fetch origin ${rev}) to run the mixed-version test" >&2
    exit 0
fi

root="$(pwd)/target/prev-release"
src="$root/src-${rev:0:12}"
bin="$root/shoal-${rev:0:12}"
if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
    echo "previous release ${PREV_TAG} (${rev:0:12}) already built" >&2
    echo "$bin"
    exit 0
fi

mkdir -p "$root"
if [ ! -f "$src/Cargo.toml" ]; then
    rm -rf "$src.tmp"
    mkdir -p "$src.tmp"
    git archive "$rev" | tar -x -C "$src.tmp"
    mv "$src.tmp" "$src"
fi
echo "building the previous release ${PREV_TAG} (${rev:0:12}) in $src" >&2
start=$(date +%s)
(cd "$src" && CARGO_TARGET_DIR="$root/target" cargo build --locked -q -p shoal --bin shoal >&2)
cp "$root/target/debug/shoal" "$bin.tmp"
mv "$bin.tmp" "$bin"
echo "built in $(( $(date +%s) - start )) s: $("$bin" --version)" >&2
echo "$bin"
