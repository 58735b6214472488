#!/usr/bin/env python3
"""Network coordinates benchmark: shoal's and Serf's RTT estimates against ping, on one layout.

One command (root; `apt-get install -y serf iproute2`; a release build of shoal):

    sudo benches/coordinates_vs_serf.py --shoal target/release/shoal
    sudo benches/coordinates_vs_serf.py --racks 3 --per-rack 3 --settle 120 --rounds 3

It creates a bridge in a namespace of its own (`shoalcoord-br`) and one namespace per host
(`shoalcoord-hI`, one veth on the bridge each; `SHOAL_BENCH_PREFIX=p` names them `p-br`,
`p-hI`). Hosts are grouped in racks; every host's
egress carries `tc netem` delays by destination (an htb class per rack, u32 filters on the
destination address): half the in-rack round trip to its rack mates, half of
`uplink[its rack] + uplink[their rack]` to the others, so a round trip between racks a and b
is `uplink[a] + uplink[b]` (default uplinks 1, 3 and 7 ms: 4, 8 and 10 ms across) and one
inside a rack is `--in-rack-ms` (0.1 ms). Each host runs one shoal agent and one Serf agent
(LAN profiles, encryption on, separate ports), so both systems see exactly the same links.

After `--settle` seconds it asks every host, for every other host, the estimate from itself:
`shoal rtt hJ` (its API) and `serf rtt hJ` (its RPC), `--rounds` times `--gap` seconds
apart, and measures the real round trip with `ping` (the median of 20 echoes, once per pair).
It prints, for each system, the median and p90 of |estimate - real| / real over every pair and
round, in the rack and across racks apart, and the median in-rack estimate beside ping's
(the LAN case of consul#8337). Every namespace and process is removed at the end, also on
Ctrl-C or an error. The bench makes no assertion; `--json FILE` keeps the raw figures.
"""
import argparse
import ctypes
import fcntl
import heapq
import json
import os
import re
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time

# Namespaces are named PREFIX-h0..; set SHOAL_BENCH_PREFIX so two runs on one machine do not
# remove each other's (leftovers of this prefix are removed at start and end).
PREFIX = os.environ.get("SHOAL_BENCH_PREFIX", "shoalcoord")
BR_NS = f"{PREFIX}-br"
SHOAL_PORT = 7946
SERF_PORT = 7947


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(*args, check=True, timeout=30, env=None):
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")
    return r


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class Layout:
    def __init__(self, racks, per_rack, uplinks, in_rack_ms):
        self.racks, self.per_rack = racks, per_rack
        self.uplinks, self.in_rack_ms = uplinks, in_rack_ms
        self.n = racks * per_rack

    def rack(self, i):
        return i // self.per_rack

    def configured_rtt_ms(self, i, j):
        ri, rj = self.rack(i), self.rack(j)
        return self.in_rack_ms if ri == rj else self.uplinks[ri] + self.uplinks[rj]

    @staticmethod
    def ns(i):
        return f"{PREFIX}-h{i}"

    @staticmethod
    def addr(i):
        return f"10.214.0.{i + 1}"


def remove_leftovers():
    out = run("ip", "netns", "list", check=False).stdout
    for line in out.splitlines():
        ns = line.split()[0] if line.split() else ""
        if not ns.startswith(PREFIX + "-"):
            continue
        for pid in run("ip", "netns", "pids", ns, check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        run("ip", "netns", "del", ns, check=False)


def netem_available():
    ns = f"{PREFIX}-probe"
    run("ip", "netns", "add", ns)
    try:
        r = run("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                "delay", "1ms", check=False)
        return r.returncode == 0
    finally:
        run("ip", "netns", "del", ns, check=False)


class TunSwitch:
    """Where the kernel has no netem: one TUN device per host namespace (`tun0`, the host's
    address, a /24 route), and this process forwards each IPv4 packet to the destination's
    device after the layout's one-way delay (a heap of deadlines; one thread, select()).
    Its own forwarding time adds to every packet, pings included: the real RTT is what ping
    measures through it."""

    TUNSETIFF = 0x400454CA
    IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
    CLONE_NEWNET = 0x40000000

    def __init__(self, lay):
        self.lay = lay
        self.fds = {}
        self.stop = False
        libc = ctypes.CDLL(None, use_errno=True)
        own = os.open("/proc/self/ns/net", os.O_RDONLY)
        try:
            for i in range(lay.n):
                ns = lay.ns(i)
                run("ip", "-n", ns, "tuntap", "add", "dev", "tun0", "mode", "tun")
                nsfd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
                if libc.setns(nsfd, self.CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
                os.close(nsfd)
                fd = os.open("/dev/net/tun", os.O_RDWR)
                fcntl.ioctl(fd, self.TUNSETIFF,
                            struct.pack("16sH", b"tun0", self.IFF_TUN | self.IFF_NO_PI))
                self.fds[fd] = i
                run("ip", "-n", ns, "addr", "add", f"{lay.addr(i)}/24", "dev", "tun0")
                run("ip", "-n", ns, "link", "set", "tun0", "up")
        finally:
            libc.setns(own, self.CLONE_NEWNET)
            os.close(own)
        self.by_host = {i: fd for fd, i in self.fds.items()}
        # A child process under SCHED_FIFO: on a loaded machine a plain thread is woken
        # milliseconds late, which would add milliseconds to every "0.1 ms" link.
        self.pid = os.fork()
        if self.pid == 0:
            try:
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50))
            except OSError:
                pass
            try:
                self.loop()
            finally:
                os._exit(0)

    def loop(self):
        lay, heap, seq = self.lay, [], 0
        index = {lay.addr(i): i for i in range(lay.n)}
        while not self.stop:
            now = time.monotonic()
            while heap and heap[0][0] <= now:
                _, _, j, pkt = heapq.heappop(heap)
                try:
                    os.write(self.by_host[j], pkt)
                except OSError:
                    pass
            timeout = max(0.0, heap[0][0] - time.monotonic()) if heap else 0.2
            ready, _, _ = select.select(list(self.fds), [], [], timeout)
            for fd in ready:
                try:
                    pkt = os.read(fd, 65536)
                except OSError:
                    continue
                if len(pkt) < 20 or pkt[0] >> 4 != 4:
                    continue
                i = self.fds[fd]
                j = index.get(".".join(str(b) for b in pkt[16:20]))
                if j is None:
                    continue
                delay = lay.configured_rtt_ms(i, j) / 2000.0
                seq += 1
                heapq.heappush(heap, (time.monotonic() + delay, seq, j, pkt))

    def close(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except OSError:
            pass
        for fd in self.fds:
            os.close(fd)


def setup_namespaces(lay):
    for i in range(lay.n):
        run("ip", "netns", "add", lay.ns(i))
        run("ip", "-n", lay.ns(i), "link", "set", "lo", "up")


def setup(lay):
    run("ip", "netns", "add", BR_NS)
    run("ip", "-n", BR_NS, "link", "add", "br0", "type", "bridge")
    run("ip", "-n", BR_NS, "link", "set", "br0", "up")
    for i in range(lay.n):
        ns = lay.ns(i)
        run("ip", "netns", "add", ns)
        run("ip", "-n", BR_NS, "link", "add", f"vh{i}", "type", "veth", "peer", "name", "eth0",
            "netns", ns)
        run("ip", "-n", BR_NS, "link", "set", f"vh{i}", "master", "br0", "up")
        run("ip", "-n", ns, "addr", "add", f"{lay.addr(i)}/24", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        # Egress delays by destination: class 1:10 (default) for the rack, 1:2R for rack R.
        tc = ["ip", "netns", "exec", ns, "tc"]
        run(*tc, "qdisc", "add", "dev", "eth0", "root", "handle", "1:", "htb", "default", "10")
        half_us = lambda ms: f"{max(1, round(ms * 500))}us"  # noqa: E731 (half, in µs)
        run(*tc, "class", "add", "dev", "eth0", "parent", "1:", "classid", "1:10", "htb",
            "rate", "10gbit")
        run(*tc, "qdisc", "add", "dev", "eth0", "parent", "1:10", "handle", "10:", "netem",
            "delay", half_us(lay.in_rack_ms), "limit", "10000")
        for r in range(lay.racks):
            if r == lay.rack(i):
                continue
            cid = 20 + r
            run(*tc, "class", "add", "dev", "eth0", "parent", "1:", "classid", f"1:{cid}",
                "htb", "rate", "10gbit")
            ms = lay.uplinks[lay.rack(i)] + lay.uplinks[r]
            run(*tc, "qdisc", "add", "dev", "eth0", "parent", f"1:{cid}", "handle", f"{cid}:",
                "netem", "delay", half_us(ms), "limit", "10000")
            for j in range(lay.n):
                if lay.rack(j) == r:
                    run(*tc, "filter", "add", "dev", "eth0", "parent", "1:", "protocol", "ip",
                        "prio", "1", "u32", "match", "ip", "dst", f"{lay.addr(j)}/32",
                        "flowid", f"1:{cid}")


class Agents:
    def __init__(self, lay, shoal, tmp):
        self.lay, self.shoal, self.tmp = lay, shoal, tmp
        self.procs = []
        self.shoal_key = run(shoal, "keygen").stdout.strip()
        self.serf_key = run("serf", "keygen").stdout.strip()

    def sock(self, i):
        return os.path.join(self.tmp, f"h{i}", "api.sock")

    def start(self):
        for i in range(self.lay.n):
            d = os.path.join(self.tmp, f"h{i}")
            os.makedirs(d, exist_ok=True)
            ns, addr = self.lay.ns(i), self.lay.addr(i)
            base = ["ip", "netns", "exec", ns]
            sh = base + [self.shoal, "agent", "--name", f"h{i}", "--bind", f"{addr}:{SHOAL_PORT}",
                         "--api", f"unix:{self.sock(i)}", "--data-dir", d, "--profile", "lan",
                         "--log-level", "warn"]
            se = base + ["serf", "agent", f"-node=h{i}", f"-bind={addr}:{SERF_PORT}",
                         "-rpc-addr=127.0.0.1:7373", f"-encrypt={self.serf_key}",
                         "-profile=lan", "-log-level=warn"]
            if i:
                sh += ["--join", f"{self.lay.addr(0)}:{SHOAL_PORT}"]
                se += [f"-join={self.lay.addr(0)}:{SERF_PORT}"]
            env = dict(os.environ, SHOAL_ENCRYPT=self.shoal_key)
            for name, args in (("shoal", sh), ("serf", se)):
                logf = open(os.path.join(d, f"{name}.log"), "w")
                self.procs.append(subprocess.Popen(args, stdout=logf, stderr=logf, env=env,
                                                   start_new_session=True))
            time.sleep(0.2)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    def shoal_rtt(self, i, j, at):
        names = [f"h{j}"] if at == i else [f"h{i}", f"h{j}"]
        r = run("ip", "netns", "exec", self.lay.ns(at), self.shoal, "rtt", *names, "--api",
                f"unix:{self.sock(at)}", "--format", "json", check=False)
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)["rtt_ms"]

    def serf_rtt(self, i, j, at):
        names = [f"h{j}"] if at == i else [f"h{i}", f"h{j}"]
        r = run("ip", "netns", "exec", self.lay.ns(at), "serf", "rtt", "-rpc-addr=127.0.0.1:7373",
                *names, check=False)
        m = re.search(r"rtt: ([0-9.]+) ms", r.stdout)
        return float(m.group(1)) if m else None

    def members(self, i):
        r = run("ip", "netns", "exec", self.lay.ns(i), "serf", "members",
                "-rpc-addr=127.0.0.1:7373", "-status=alive", check=False)
        serf = len(r.stdout.splitlines())
        r = run("ip", "netns", "exec", self.lay.ns(i), self.shoal, "members", "--api",
                f"unix:{self.sock(i)}", "--format", "json", check=False)
        try:
            v = json.loads(r.stdout)
            shoal = sum(1 for m in v if m.get("status") == "alive")
        except (ValueError, KeyError, TypeError):
            shoal = 0
        return shoal, serf


def ping_ms(lay, i, j):
    """The median of 20 echoes (robust to the odd late wake-up on a loaded machine)."""
    r = run("ip", "netns", "exec", lay.ns(i), "ping", "-c", "20", "-i", "0.02", lay.addr(j),
            check=False, timeout=60)
    times = [float(t) for t in re.findall(r"time=([0-9.]+) ms", r.stdout)]
    return statistics.median(times) if times else None


def summary(rows, system, lay):
    out = {}
    for part, keep in (("all", lambda i, j: True),
                       ("in-rack", lambda i, j: lay.rack(i) == lay.rack(j)),
                       ("across", lambda i, j: lay.rack(i) != lay.rack(j))):
        errs = [abs(r[system] - r["real"]) / r["real"] for r in rows
                if r[system] is not None and keep(r["i"], r["j"])]
        missing = sum(1 for r in rows if r[system] is None and keep(r["i"], r["j"]))
        out[part] = {"median": pct(errs, 0.5), "p90": pct(errs, 0.9), "n": len(errs),
                     "missing": missing}
    lan = [r[system] for r in rows if r[system] is not None and lay.rack(r["i"]) == lay.rack(r["j"])]
    out["in_rack_estimate_ms"] = pct(lan, 0.5)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shoal", default="target/release/shoal")
    ap.add_argument("--racks", type=int, default=3)
    ap.add_argument("--per-rack", type=int, default=3)
    ap.add_argument("--uplinks", default="1,3,7", help="per-rack uplink RTT shares, ms")
    ap.add_argument("--in-rack-ms", type=float, default=0.1)
    ap.add_argument("--settle", type=float, default=120)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--gap", type=float, default=10)
    ap.add_argument("--json")
    ap.add_argument("--delays", choices=("auto", "netem", "tun"), default="auto",
                    help="tc netem on veths, or a userspace TUN switch (auto: netem if the "
                         "kernel has it)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (network namespaces)")
    for tool in ("serf", "tc", "ip", "ping"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install -y serf iproute2 iputils-ping")
    uplinks = [float(x) for x in a.uplinks.split(",")]
    if len(uplinks) < a.racks:
        sys.exit("--uplinks needs one value per rack")
    lay = Layout(a.racks, a.per_rack, uplinks, a.in_rack_ms)
    shoal = os.path.abspath(a.shoal)
    tmp = tempfile.mkdtemp(prefix=f"{PREFIX}-")
    agents = None
    switch = None

    def bail(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, bail)
    try:
        remove_leftovers()
        mode = a.delays
        if mode == "auto":
            mode = "netem" if netem_available() else "tun"
        log(f"delays by {mode}")
        if mode == "netem":
            setup(lay)
        else:
            setup_namespaces(lay)
            switch = TunSwitch(lay)
        log(f"{lay.n} hosts in {lay.racks} racks; starting shoal and Serf on each")
        agents = Agents(lay, shoal, tmp)
        agents.start()
        end = time.monotonic() + 60
        while time.monotonic() < end and agents.members(0) != (lay.n, lay.n):
            time.sleep(1)
        log(f"alive members seen by h0 (shoal, serf): {agents.members(0)}")
        real = {}
        for i in range(lay.n):
            for j in range(lay.n):
                if i != j:
                    real[(i, j)] = ping_ms(lay, i, j)
        log(f"pings done; settling {a.settle:.0f} s")
        time.sleep(a.settle)
        rows, remote = [], []
        for k in range(a.rounds):
            if k:
                time.sleep(a.gap)
            for (i, j), r in real.items():
                if not r:
                    continue
                row = {"round": k, "i": i, "j": j, "real": r,
                       "configured": lay.configured_rtt_ms(i, j)}
                rows.append(dict(row, shoal=agents.shoal_rtt(i, j, i),
                                 serf=agents.serf_rtt(i, j, i)))
                # Between two other hosts, as host 0 estimates it: coordinates only.
                if 0 not in (i, j) and i < j:
                    remote.append(dict(row, shoal=agents.shoal_rtt(i, j, 0),
                                       serf=agents.serf_rtt(i, j, 0)))
            log(f"round {k + 1}/{a.rounds} read")
        for title, rs in (("from the asking host to another", rows),
                          ("between two other hosts, asked of h0 (coordinates only)", remote)):
            print_table(title, rs, lay, a, mode)
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"rows": rows, "remote": remote, "args": vars(a), "delays": mode}, f,
                          indent=1)
    except KeyboardInterrupt:
        log("interrupted")
    finally:
        if agents:
            agents.stop()
        if switch:
            switch.close()
        remove_leftovers()
        shutil.rmtree(tmp, ignore_errors=True)


def print_table(title, rows, lay, a, mode):
    res = {s: summary(rows, s, lay) for s in ("shoal", "serf")}
    in_rack_ping = pct([r["real"] for r in rows if lay.rack(r["i"]) == lay.rack(r["j"])], 0.5)
    print(f"\nNetwork coordinates, {title}: {lay.n} hosts in {lay.racks} racks, "
          f"delays by {mode} "
          f"(in-rack {lay.in_rack_ms} ms, uplinks {a.uplinks} ms), settle {a.settle:.0f} s, "
          f"{a.rounds} rounds; relative error |est - ping| / ping over every ordered pair\n")
    print("| system | median (all) | p90 (all) | median in rack | median across | "
          "in-rack estimate (ping) | pairs read |")
    print("|---|---|---|---|---|---|---|")
    for s in ("shoal", "serf"):
        r = res[s]
        print(f"| {s} | {r['all']['median']:.3f} | {r['all']['p90']:.3f} | "
              f"{r['in-rack']['median']:.3f} | {r['across']['median']:.3f} | "
              f"{r['in_rack_estimate_ms']:.3f} ms ({in_rack_ping:.3f} ms) | "
              f"{r['all']['n']} (+{r['all']['missing']} missing) |")
    ratio = res["shoal"]["all"]["median"] / res["serf"]["all"]["median"]
    print(f"\nshoal / Serf median relative error: {ratio:.2f}")


if __name__ == "__main__":
    main()
