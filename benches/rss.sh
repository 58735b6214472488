#!/usr/bin/env bash
# Idle resident memory per agent: N shoal agents and N Serf agents on loopback, side by side.
#
#   benches/rss.sh [N]            # N = 10 by default; needs serf (apt-get install -y serf)
#   SHOAL=path/to/shoal IDLE=20 benches/rss.sh 20
#
# Each agent has its own data directory and ports; the shoal agents share one key from
# `shoal keygen`, the Serf agents one from `serf keygen`, both run their LAN profile. The
# script waits (bounded) until every agent of a side sees N alive, lets both sides idle for
# IDLE seconds (10), then reads /proc/PID/smaps_rollup of every agent and prints, per side,
# the median of Rss, of its anonymous part (heap, stacks: what the agent allocated) and of the
# rest (file-backed: the program's code and the shared libraries' pages it touched), and the
# ratio shoal / Serf. The shoal binary: $SHOAL, else the newest dist build
# (packaging/build-dist.sh: the static musl one, or the glibc one). Needs no root.
# Everything it started is stopped and its temporary directory removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

n="${1:-10}"
idle="${IDLE:-10}"
timeout_s="${CONVERGE_TIMEOUT:-90}"
[ "$n" -ge 2 ] 2>/dev/null || { echo "usage: $0 [N >= 2]" >&2; exit 2; }
command -v serf >/dev/null || { echo "serf not found: apt-get install -y serf" >&2; exit 1; }
if [ -z "${SHOAL:-}" ]; then
    SHOAL=$(bash packaging/build-dist.sh --path) \
        || { echo "no dist build of shoal: bash packaging/build-dist.sh (or set SHOAL)" >&2; exit 1; }
fi
[ -x "$SHOAL" ] || { echo "$SHOAL: not an executable" >&2; exit 1; }

# Ports: shoal gossip 17000+i, Serf gossip 18000+i, Serf RPC 19000+i.
tmp=$(mktemp -d /tmp/shoal-rss.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

shoal_key=$("$SHOAL" keygen)
serf_key=$(serf keygen)
shoal_pids=() serf_pids=()
declare -A names
start_agents() {  # agents $1 .. $2-1 of both sides
    local i d join
    for ((i = $1; i < $2; i++)); do
        d="$tmp/sh$i"
        mkdir -p "$d"
        join=()
        [ "$i" -gt 0 ] && join=(--join "127.0.0.1:17000")
        SHOAL_ENCRYPT="$shoal_key" "$SHOAL" agent --name "sh$i" --bind "127.0.0.1:$((17000 + i))" \
            --api "unix:$d/api.sock" --data-dir "$d" --profile lan --log-level warn \
            "${join[@]}" >"$d/log" 2>&1 &
        pids+=($!) shoal_pids+=($!)
        names[$!]="sh$i"
        d="$tmp/se$i"
        mkdir -p "$d"
        join=()
        [ "$i" -gt 0 ] && join=(-join=127.0.0.1:18000)
        serf agent -node="se$i" -bind="127.0.0.1:$((18000 + i))" -rpc-addr="127.0.0.1:$((19000 + i))" \
            -encrypt="$serf_key" -profile=lan -log-level=warn "${join[@]}" >"$d/log" 2>&1 &
        pids+=($!) serf_pids+=($!)
        names[$!]="se$i"
    done
}
shoal_alive() {  # how many members agent $1 serves alive (0 if its API does not answer yet)
    "$SHOAL" members --api "unix:$tmp/sh$1/api.sock" --status alive --format json 2>/dev/null \
        | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo 0
}
serf_alive() {
    serf members -rpc-addr="127.0.0.1:$((19000 + $1))" -status=alive 2>/dev/null | grep -c . || true
}
converged() {  # $1: shoal|serf
    for ((i = 0; i < n; i++)); do
        [ "$("${1}_alive" "$i")" -eq "$n" ] || return 1
    done
}
check() {  # every agent still runs, and the deadline has not passed ($1: what is awaited)
    local p rc
    for p in "${!names[@]}"; do
        if ! kill -0 "$p" 2>/dev/null; then
            wait "$p" && rc=0 || rc=$?
            echo "agent ${names[$p]} exited (status $rc); its log:" >&2
            tail -n 20 "$tmp/${names[$p]}/log" >&2
            exit 1
        fi
    done
    if ((SECONDS - start > timeout_s)); then
        echo "$1: not reached after ${timeout_s} s" >&2
        exit 1
    fi
}
start=$SECONDS
# The seeds first: a Serf agent whose -join finds nobody listening exits.
start_agents 0 1
until [ "$(shoal_alive 0)" -ge 1 ] && [ "$(serf_alive 0)" -ge 1 ]; do
    check "the seeds' APIs"
    sleep 0.2
done
start_agents 1 "$n"
for side in shoal serf; do
    until converged "$side"; do
        check "$side: $n agents seeing $n alive"
        sleep 0.5
    done
    echo "$side: $n agents see $n alive ($((SECONDS - start)) s after start)"
done
echo "idle for ${idle} s"
sleep "$idle"

# Median of a list of kB figures.
median_kb() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
field() { awk -v f="$1:" '$1 == f {print $2}' "/proc/$2/smaps_rollup"; }
declare -A rss anon file
for side in shoal serf; do
    eval "ps_=(\"\${${side}_pids[@]}\")"
    rss[$side]=$(for p in "${ps_[@]}"; do field Rss "$p"; done | median_kb)
    anon[$side]=$(for p in "${ps_[@]}"; do field Anonymous "$p"; done | median_kb)
    file[$side]=$(for p in "${ps_[@]}"; do echo $(($(field Rss "$p") - $(field Anonymous "$p"))); done | median_kb)
done
mb() { awk -v a="$1" 'BEGIN {printf "%.1f", a / 1024}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", a / b}'; }
row() {  # label, then the shoal and Serf medians in kB
    printf '%-22s %7s MB %7s MB %8s\n' "$1" "$(mb "$2")" "$(mb "$3")" "$(ratio "$2" "$3")"
}
echo
echo "idle RSS per agent, median of $n ($(date -u '+%Y-%m-%d %H:%M UTC'), $SHOAL, $(serf version | head -1))"
printf '%-22s %10s %10s %8s\n' "" shoal serf ratio
row "Rss" "${rss[shoal]}" "${rss[serf]}"
row "  anonymous" "${anon[shoal]}" "${anon[serf]}"
row "  file (code, libs)" "${file[shoal]}" "${file[serf]}"
