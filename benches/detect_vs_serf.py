#!/usr/bin/env python3
"""Failure and leave detection, shoal vs HashiCorp Serf, side by side in one run.

Starts N agents of each (default 10) on loopback, each on its own address (127.0.1.x for
shoal, 127.0.2.x for serf), both with their LAN profile, waits until every agent sees N
alive members (join convergence), then repeatedly kills one agent with SIGKILL and measures
how long until a chosen peer reports it failed (`down` / `failed`), restarting it between
rounds. Prints medians side by side. Needs `serf` on PATH (apt-get install serf) and a built
shoal binary (`cargo build --release`).

Idle cost: after convergence, each system idles for --idle seconds while the script reads
per-process CPU time and RSS from /proc and, when run as root with iptables available, the
gossip bytes each system's subnet sends (an iptables accounting rule per subnet, removed at
the end; serf's RPC port 7373, which the script itself uses, is not counted).

Usage: benches/detect_vs_serf.py [--nodes 10] [--rounds 5] [--idle 30] [--shoal target/release/shoal]
Everything binds to 127.0.0.0/8 only; every wait is bounded.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time


def now():
    return time.monotonic()


def wait_until(pred, timeout, step=0.02):
    end = now() + timeout
    while now() < end:
        try:
            if pred():
                return True
        except Exception:
            pass
        time.sleep(step)
    return False


class Serf:
    name = "serf"

    def __init__(self, n, tmp):
        self.n, self.tmp, self.procs = n, tmp, {}

    def addr(self, i):
        return f"127.0.2.{i + 1}"

    def start(self, i):
        args = ["serf", "agent", f"-node=s{i}", f"-bind={self.addr(i)}:7946",
                f"-rpc-addr={self.addr(i)}:7373", "-log-level=err", "-profile=lan"]
        if i != 0:
            args.append(f"-join={self.addr(0)}:7946")
        log = open(os.path.join(self.tmp, f"serf{i}.log"), "w")
        self.procs[i] = subprocess.Popen(args, stdout=log, stderr=log)

    def members(self, viewer):
        out = subprocess.run(["serf", "members", f"-rpc-addr={self.addr(viewer)}:7373",
                              "-format=json"], capture_output=True, timeout=5, check=True)
        return {m["name"]: m["status"] for m in json.loads(out.stdout)["members"]}

    def node_name(self, i):
        return f"s{i}"

    def failed_word(self):
        return "failed"


class Shoal:
    name = "shoal"

    def __init__(self, n, tmp, binary):
        self.n, self.tmp, self.bin, self.procs = n, tmp, binary, {}

    def addr(self, i):
        return f"127.0.1.{i + 1}"

    def sock(self, i):
        return os.path.join(self.tmp, f"shoal{i}", "shoal.sock")

    def start(self, i):
        d = os.path.join(self.tmp, f"shoal{i}")
        os.makedirs(d, exist_ok=True)
        args = [self.bin, "agent", "--name", f"h{i}", "--bind", f"{self.addr(i)}:7946",
                "--api", f"unix:{self.sock(i)}", "--data-dir", d, "--profile", "lan"]
        if i != 0:
            args += ["--join", f"{self.addr(0)}:7946"]
        log = open(os.path.join(self.tmp, f"shoal{i}.log"), "w")
        env = dict(os.environ, RUST_LOG="warn")
        self.procs[i] = subprocess.Popen(args, stdout=log, stderr=log, env=env)

    def members(self, viewer):
        out = subprocess.run([self.bin, "members", "--api", f"unix:{self.sock(viewer)}",
                              "--format", "json"], capture_output=True, timeout=5, check=True)
        return {m["name"]: m["status"] for m in json.loads(out.stdout)}

    def node_name(self, i):
        return f"h{i}"

    def failed_word(self):
        return "down"


CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / CLK_TCK


def proc_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def ipt(*args):
    return subprocess.run(["iptables", *args], capture_output=True, text=True)


def rules(subnet):
    return [["OUTPUT", "-s", subnet, "-p", proto, "!", "--dport", "7373", "!", "--sport", "7373"]
            for proto in ("udp", "tcp")]


def subnet_bytes(subnet):
    """Bytes (UDP and TCP) sent from `subnet`; accounting rules are installed on first use."""
    for rule in rules(subnet):
        if ipt("-C", *rule).returncode != 0:
            ipt("-I", *rule)
    out = ipt("-L", "OUTPUT", "-v", "-n", "-x").stdout
    total = 0
    for line in out.splitlines():
        cols = line.split()
        if len(cols) > 7 and subnet in cols[2:9]:
            total += int(cols[1])
    return total


def drop_rules(subnet):
    for rule in rules(subnet):
        while ipt("-D", *rule).returncode == 0:
            pass


def idle_cost(sys_, n, seconds):
    pids = [p.pid for p in sys_.procs.values()]
    subnet = sys_.addr(0).rsplit(".", 1)[0] + ".0/24"
    use_ipt = os.geteuid() == 0 and shutil.which("iptables") is not None
    b0 = subnet_bytes(subnet) if use_ipt else None
    c0 = [proc_cpu_s(p) for p in pids]
    time.sleep(seconds)
    c1 = [proc_cpu_s(p) for p in pids]
    b1 = subnet_bytes(subnet) if use_ipt else None
    if use_ipt:
        drop_rules(subnet)
    cpu = [(b - a) / seconds * 100 for a, b in zip(c0, c1)]
    return {
        "idle_bytes_per_s_per_node": round((b1 - b0) / seconds / n, 1) if use_ipt else None,
        "idle_cpu_pct_per_node": round(statistics.mean(cpu), 3),
        "rss_mb_median": round(statistics.median(proc_rss_mb(p) for p in pids), 1),
    }


def measure(sys_, n, rounds, idle):
    res = {"join_s": None, "detect_s": []}
    t0 = now()
    for i in range(n):
        sys_.start(i)
        if i == 0:
            time.sleep(0.3)
    ok = wait_until(lambda: all(
        sum(1 for s in sys_.members(v).values() if s == "alive") == n for v in range(n)), 60)
    res["join_s"] = round(now() - t0, 3) if ok else None
    if idle > 0:
        time.sleep(2)
        res.update(idle_cost(sys_, n, idle))
    victim, viewer = n - 1, 0
    for r in range(rounds):
        # Let the cluster settle (the restarted victim must be alive everywhere).
        wait_until(lambda: sys_.members(viewer).get(sys_.node_name(victim)) == "alive", 60)
        time.sleep(2)
        sys_.procs[victim].send_signal(signal.SIGKILL)
        sys_.procs[victim].wait()
        t = now()
        seen = wait_until(lambda: sys_.members(viewer).get(sys_.node_name(victim))
                          == sys_.failed_word(), 60, step=0.05)
        if seen:
            res["detect_s"].append(round(now() - t, 3))
        sys_.start(victim)
    return res


def stop_all(sys_):
    for p in sys_.procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in sys_.procs.values():
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--idle", type=int, default=30)
    ap.add_argument("--shoal", default="target/release/shoal")
    a = ap.parse_args()
    if not shutil.which("serf"):
        sys.exit("serf not found: apt-get install serf")
    tmp = tempfile.mkdtemp(prefix="shoal-vs-serf-")
    out = {}
    for sys_ in (Shoal(a.nodes, tmp, a.shoal), Serf(a.nodes, tmp)):
        try:
            out[sys_.name] = measure(sys_, a.nodes, a.rounds, a.idle)
        finally:
            stop_all(sys_)
    print(f"{'':28}{'shoal':>12}{'serf':>12}")
    print(f"{'join converge (s)':28}{out['shoal']['join_s']!s:>12}{out['serf']['join_s']!s:>12}")
    for k in ("shoal", "serf"):
        d = out[k]["detect_s"]
        out[k]["detect_median_s"] = statistics.median(d) if d else None
    print(f"{'kill -> seen down, median (s)':28}{out['shoal']['detect_median_s']!s:>12}"
          f"{out['serf']['detect_median_s']!s:>12}")
    for k, label in (("idle_bytes_per_s_per_node", "idle gossip B/s per node"),
                     ("idle_cpu_pct_per_node", "idle CPU % per node"),
                     ("rss_mb_median", "RSS MB per agent (median)")):
        print(f"{label:28}{out['shoal'].get(k)!s:>12}{out['serf'].get(k)!s:>12}")
    print(f"{'samples':28}{out['shoal']['detect_s']!s:>12}  {out['serf']['detect_s']!s}")
    print(json.dumps(out))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
