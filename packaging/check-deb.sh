#!/usr/bin/env bash
# Builds the Debian package with cargo-deb and checks what it holds and installs, so that the
# packaging cannot rot: the files, the unit, the maintainer scripts, an unpack into a
# temporary dpkg root, and the packaged binary running an agent from the packaged config.
# Used by .ci/run; run it by hand the same way: bash packaging/check-deb.sh
# SHOAL_DEB_PROFILE=dev packages the debug build `cargo test` already made (what CI does, to
# check the packaging without a second, optimised build); the default is release.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deb >/dev/null 2>&1; then
    cargo install cargo-deb --locked
fi
profile="${SHOAL_DEB_PROFILE:-dist}"
# The dist package holds the static musl binary when the musl target is installed (as
# packaging/build-dist.sh builds it); without it, the glibc one, with a warning.
target=()
musl=x86_64-unknown-linux-musl
if [ "$profile" = dist ]; then
    if rustup target list --installed 2>/dev/null | grep -qx "$musl"; then
        target=(--target "$musl")
    else
        echo "check-deb: WARNING: the $musl target is not installed (rustup target add $musl):" \
            "packaging the glibc binary" >&2
    fi
fi
cargo deb --locked --strip --profile "$profile" "${target[@]}"
tdir="${CARGO_TARGET_DIR:-target}"
deb=$( (ls -t "$tdir"/debian/shoal_*.deb "$tdir"/*/debian/shoal_*.deb 2>/dev/null || true) | head -1)
[ -n "$deb" ] || { echo "check-deb: cargo deb made no package under $tdir" >&2; exit 1; }
echo "built $deb ($(du -h "$deb" | cut -f1))"
dpkg-deb -I "$deb" | sed -n '1,/Description/p'

fail() { echo "check-deb: $*" >&2; exit 1; }
contents=$(dpkg-deb -c "$deb")
for f in ./usr/bin/shoal ./etc/shoal/shoal.toml ./usr/share/doc/shoal/README.md; do
    grep -q " $f\$" <<<"$contents" || fail "$f is missing from the package"
done
grep -Eq " \./(usr/)?lib/systemd/system/shoal\.service\$" <<<"$contents" \
    || fail "the systemd unit is missing from the package"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb -e "$deb" "$work/control"
grep -qx "/etc/shoal/shoal.toml" "$work/control/conffiles" || fail "shoal.toml is not a conffile"
grep -q "adduser --system" "$work/control/postinst" || fail "postinst does not create the shoal user"
grep -q "deb-systemd-helper" "$work/control/postinst" || fail "postinst does not enable the unit"
grep -q "^Depends:.*adduser" "$work/control/control" || fail "the package does not depend on adduser"

# Install into a clean directory root (a dpkg database of its own; the maintainer scripts,
# which would add a user to this machine, are not run).
root="$work/root"
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
touch "$root/var/lib/dpkg/status"
dpkg --root="$root" --force-depends --force-script-chrootless --unpack "$deb" >/dev/null
dpkg --root="$root" -L shoal | grep -q "/usr/bin/shoal" || fail "dpkg does not list /usr/bin/shoal"
unit=$(find "$root" -name shoal.service | head -1)
for want in "Restart=on-failure" "User=shoal" "ExecStart=/usr/bin/shoal agent --config /etc/shoal/shoal.toml" "ExecReload=" "StateDirectory=shoal" "Type=notify" "CapabilityBoundingSet=" "SystemCallFilter=@system-service"; do
    grep -q "^$want" "$unit" || fail "the unit lacks $want"
done
"$root/usr/bin/shoal" --version
# The packaged unit's exposure (8.5 before the hardening), where systemd-analyze can rate a
# unit file offline (systemd 252 and later).
if command -v systemd-analyze >/dev/null 2>&1 \
    && score=$(systemd-analyze security --offline=yes "$unit" 2>/dev/null | sed -n 's/.*shoal.service: \([0-9.]*\).*/\1/p') \
    && [ -n "$score" ]; then
    echo "systemd-analyze security: exposure $score"
    awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || fail "the unit's exposure is $score (want at most 2.0)"
else
    echo "check-deb: systemd-analyze security --offline not available: exposure not rated"
fi

# The packaged binary runs an agent from the packaged config (loopback and a temporary data
# directory instead of the host's), and its API answers.
data="$work/data"
mkdir -p "$data"
# An unpacked (not yet configured) conffile waits as .dpkg-new.
conf="$root/etc/shoal/shoal.toml"
[ -f "$conf" ] || conf="$conf.dpkg-new"
[ -f "$conf" ] || fail "the config file was not unpacked"
# The agent refuses to start without a key: the packaged binary makes one, into a key file as
# the packaged config reads it (never on the command line).
grep -q '^encrypt_file = "/etc/shoal/encrypt.key"' "$conf" || fail "the packaged config does not read the key from a file"
grep -q '^encrypt = ' "$conf" && fail "the packaged config holds a key"
(umask 077; "$root/usr/bin/shoal" keygen > "$work/encrypt.key")
"$root/usr/bin/shoal" agent --config "$conf" --name ci-check --encrypt-file "$work/encrypt.key" \
    --bind 127.0.0.1:0 --data-dir "$data" --api "unix:$data/shoal.sock" --log-level warn &
pid=$!
ok=0
for _ in $(seq 1 100); do
    if "$root/usr/bin/shoal" info --api "unix:$data/shoal.sock" >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.1
done
kill -TERM "$pid" 2>/dev/null || true
wait "$pid" || true
[ "$ok" = 1 ] || fail "the packaged agent did not answer on its API"
echo "check-deb: $deb is complete, unpacks into a clean root, and its agent runs"
