"""Fallback licence check for CI when cargo-deny cannot be installed.

Reads `cargo metadata --format-version 1` on stdin and the allow list of deny.toml (argv[1]);
fails when a package's licence expression cannot be satisfied by allowed licences.
"""
import json
import re
import sys
import tomllib

allow = set(tomllib.load(open(sys.argv[1], "rb"))["licenses"]["allow"])
meta = json.load(sys.stdin)
bad = []
for p in meta["packages"]:
    expr = (p.get("license") or "").replace("/", " OR ")
    if not expr:
        bad.append((p["name"], p["version"], "no licence field"))
        continue
    # An expression is satisfied when one of its OR alternatives has every AND part allowed.
    ok = False
    for alt in re.split(r"\s+OR\s+", expr.replace("(", " ").replace(")", " ")):
        parts = [x.strip() for x in re.split(r"\s+AND\s+", alt) if x.strip()]
        if parts and all(x in allow for x in parts):
            ok = True
            break
    if not ok:
        bad.append((p["name"], p["version"], expr))
for name, version, why in bad:
    print(f"licence not allowed: {name} {version}: {why}")
print(f"licences: {len(meta['packages'])} packages, {len(bad)} not allowed")
sys.exit(1 if bad else 0)
