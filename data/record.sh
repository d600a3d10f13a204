#!/usr/bin/env bash
# Record ntg-edge's embedded default capture corpus: data/captures/<service>/<service>.pcap
#
# Real protocol software (nginx, OpenSSH, dnsmasq, curl, wget, dig, python) talks across a veth pair between two
# network namespaces (ntg-srv 10.99.0.1 <-> ntg-cli 10.99.0.2, MTU 1500, offloads off, netem delay/jitter/rate on
# both ends); tcpdump (libpcap) captures on the server's veth with a small snap length, one file per service, so the
# folder name is the label. No traffic leaves the two namespaces.
#
# Usage:  sudo data/record.sh [service ...]     (default: http https dns ssh video)
# Needs (Debian 12): tcpdump nginx-light dnsmasq-base openssh-server openssh-client ethtool dnsutils curl wget
#                    iproute2 openssl python3  (see data/README.md)
# Rerunnable and idempotent: everything it starts is stopped and both namespaces are removed on exit (also on error
# or Ctrl-C); captures are written to a temp dir and moved into place only after all requested services succeeded
# and the corpus stays under the size cap. Random choices are seeded (SEED), timings are real and vary between runs.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEST="$HERE/captures"
SNAPLEN="${SNAPLEN:-128}"          # the ingest takes payload lengths from the IP header; headers fit in 128 bytes
SEED="${SEED:-1}"
MAX_TOTAL="${MAX_TOTAL:-8000000}"  # bytes, whole corpus
SRV_NS=ntg-srv CLI_NS=ntg-cli MID_NS=ntg-mid
SRV_IF=veth-srv CLI_IF=veth-cli
SRV_IP=10.99.0.1 CLI_IP=10.99.0.2
SERVICES=("$@")
[ ${#SERVICES[@]} -gt 0 ] || SERVICES=(http https dns ssh video)
PY=/usr/bin/python3

[ "$(id -u)" = 0 ] || { echo "record.sh: needs root (network namespaces)" >&2; exit 1; }
for c in ip tc ethtool tcpdump nginx dnsmasq /usr/sbin/sshd ssh scp ssh-keygen dig host curl wget openssl "$PY"; do
  command -v "$c" >/dev/null || { echo "record.sh: missing $c (see data/README.md)" >&2; exit 1; }
done

WORK="$(mktemp -d /tmp/ntg-record.XXXXXX)"
chmod 755 "$WORK"  # nginx workers run as nobody
PIDS=()

in_srv() { ip netns exec "$SRV_NS" "$@"; }
in_cli() { ip netns exec "$CLI_NS" "$@"; }

kill_ns_procs() {  # processes still inside one of our namespaces (ours, from this or an aborted earlier run)
  local ns=$1 p
  ip netns list 2>/dev/null | grep -qw "$ns" || return 0
  for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
}

cleanup() {
  local p ns
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for ns in "$SRV_NS" "$CLI_NS" "$MID_NS"; do kill_ns_procs "$ns"; ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------------------- network
# ntg-cli [veth-cli] <-> [veth-mc] ntg-mid [veth-ms] <-> [veth-srv] ntg-srv. ntg-mid holds no address: a small
# AF_PACKET relay (delay.py) forwards every frame after a one-way delay of ~5 ms +-2 ms, frame order kept, so
# inter-arrival times look like a network and not like loopback (netem would do this, but this kernel has no sch_netem).
for ns in "$SRV_NS" "$CLI_NS" "$MID_NS"; do kill_ns_procs "$ns"; ip netns del "$ns" 2>/dev/null || true; done
for ns in "$SRV_NS" "$CLI_NS" "$MID_NS"; do
  ip netns add "$ns"
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip netns exec "$ns" ip link set lo up
done
ip link add "$SRV_IF" netns "$SRV_NS" mtu 1500 type veth peer name veth-ms netns "$MID_NS" mtu 1500
ip link add "$CLI_IF" netns "$CLI_NS" mtu 1500 type veth peer name veth-mc netns "$MID_NS" mtu 1500
for ns in "$SRV_NS" "$CLI_NS" "$MID_NS"; do  # the sysctl above only covers devices created after it
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
done
in_srv ip addr add "$SRV_IP/24" dev "$SRV_IF"
in_cli ip addr add "$CLI_IP/24" dev "$CLI_IF"
# No segmentation/receive offloads anywhere on the path: the capture must hold wire-sized packets (<= 1514 bytes).
for nd in "$SRV_NS:$SRV_IF" "$CLI_NS:$CLI_IF" "$MID_NS:veth-ms" "$MID_NS:veth-mc"; do
  ip netns exec "${nd%%:*}" ethtool -K "${nd#*:}" tso off gso off gro off tx off >/dev/null 2>&1 ||
    ip netns exec "${nd%%:*}" ethtool -K "${nd#*:}" tso off gso off
  ip netns exec "${nd%%:*}" ip link set "${nd#*:}" up
done
ip -n "$MID_NS" link set veth-ms promisc on
ip -n "$MID_NS" link set veth-mc promisc on
# A 50 Mbit/s bottleneck at both ends (token bucket; present in kernels that lack netem/fq).
in_srv tc qdisc add dev "$SRV_IF" root tbf rate 50mbit burst 15k latency 100ms
in_cli tc qdisc add dev "$CLI_IF" root tbf rate 50mbit burst 15k latency 100ms
cat >"$WORK/delay.py" <<'EOF'
"""L2 relay between two interfaces adding a one-way delay (mean, sd in ms) to each frame, keeping frame order."""
import collections, random, socket, sys, threading, time
a, b, mean, sd = sys.argv[1], sys.argv[2], float(sys.argv[3]) / 1e3, float(sys.argv[4]) / 1e3
random.seed(int(sys.argv[5]))
def sock(i):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)); s.bind((i, 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20); s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    return s
sa, sb = sock(a), sock(b)
def pump(src, dst):
    q, cv, last = collections.deque(), threading.Condition(), [0.0]
    def tx():
        while True:
            with cv:
                while not q: cv.wait()
                t, f = q.popleft()
            d = t - time.monotonic()
            if d > 0: time.sleep(d)
            try: dst.send(f)
            except OSError: pass
    threading.Thread(target=tx, daemon=True).start()
    while True:
        f, addr = src.recvfrom(65535)
        if addr[2] == socket.PACKET_OUTGOING: continue
        t = max(last[0], time.monotonic() + max(0.0005, random.gauss(mean, sd))); last[0] = t
        with cv: q.append((t, f)); cv.notify()
threading.Thread(target=pump, args=(sa, sb), daemon=True).start()
pump(sb, sa)
EOF
ip netns exec "$MID_NS" "$PY" "$WORK/delay.py" veth-ms veth-mc "${DELAY_MS:-5}" "${JITTER_MS:-2}" "$SEED" >"$WORK/delay.log" 2>&1 &
PIDS+=($!)
sleep 0.5
in_cli "$PY" -c "import socket,sys; s=socket.create_connection((sys.argv[1], 9), 3)" "$SRV_IP" 2>/dev/null || true  # warm up ARP through the relay

# ---------------------------------------------------------------------------------------------------------- content
mkdir -p "$WORK/www" "$WORK/out" "$WORK/ssh" "$WORK/srvfiles" "$WORK/clifiles"
cat >"$WORK/gen.py" <<'EOF'
import os, random, sys, math
random.seed(int(sys.argv[2])); root = sys.argv[1]
words = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore "
         "magna aliqua network packet flow capture traffic edge generator model token sample server client").split()
def text(n):
    out, size = [], 0
    while size < n:
        w = " ".join(random.choice(words) for _ in range(random.randint(5, 18)))
        out.append("<p>%s.</p>\n" % w.capitalize()); size += len(out[-1])
    return "".join(out)
pages = [f"page{i:02d}.html" for i in range(48)]
os.makedirs(f"{root}/static", exist_ok=True); os.makedirs(f"{root}/img", exist_ok=True)
os.makedirs(f"{root}/files", exist_ok=True); os.makedirs(f"{root}/blog", exist_ok=True)
css = [f"static/s{i}.css" for i in range(4)] + [f"static/app{i}.js" for i in range(5)]
imgs = [f"img/i{i:02d}.jpg" for i in range(24)]
for a in css:
    open(f"{root}/{a}", "w").write(text(int(math.exp(random.uniform(math.log(2e3), math.log(4e4))))))
for a in imgs:  # incompressible, like real images
    open(f"{root}/{a}", "wb").write(os.urandom(int(math.exp(random.uniform(math.log(2e3), math.log(6e4))))))
for i, p in enumerate(pages + ["index.html"] + [f"blog/post{j}.html" for j in range(12)]):
    links = random.sample(pages, 6); res = random.sample(css, 2) + random.sample(imgs, random.randint(0, 4))
    head = "".join(f'<link rel="stylesheet" href="/{r}">\n' if r.endswith(".css") else
                   f'<script src="/{r}"></script>\n' if r.endswith(".js") else f'<img src="/{r}">\n' for r in res)
    body = text(int(math.exp(random.uniform(math.log(400), math.log(4e4)))))
    nav = "".join(f'<a href="/{l}">{l}</a>\n' for l in links)
    open(f"{root}/{p}", "w").write(f"<!doctype html><html><head><title>{p}</title>\n{head}</head><body>\n{nav}{body}</body></html>\n")
for name, size in [("f200k.bin", 200_000), ("f350k.bin", 350_000), ("f600k.bin", 600_000), ("f1m.bin", 1_000_000),
                   ("f2m.bin", 2_000_000), ("f5m.bin", 5_000_000)]:
    open(f"{root}/files/{name}", "wb").write(os.urandom(size))
open(f"{root}/robots.txt", "w").write("User-agent: *\nDisallow: /files/\n")
open(f"{root}/favicon.ico", "wb").write(os.urandom(1150))
EOF
"$PY" "$WORK/gen.py" "$WORK/www" "$SEED"
for s in 1k:1024 8k:8192 40k:40960 150k:153600 400k:409600 900k:921600 1500k:1536000; do
  head -c "${s#*:}" /dev/urandom >"$WORK/srvfiles/d${s%%:*}.dat"
  head -c "${s#*:}" /dev/urandom >"$WORK/clifiles/u${s%%:*}.dat"
done

# --------------------------------------------------------------------------------------------------- client driver
cat >"$WORK/driver.py" <<'EOF'
"""Client side of every service; runs in ntg-cli. Bounded: each mode runs a fixed job list and returns."""
import concurrent.futures as cf, http.client, os, random, socket, ssl, subprocess, sys, threading, time
mode, work, srv, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rnd = random.Random(f"{seed}-{mode}")
DEVNULL = subprocess.DEVNULL
def run(cmd, timeout=120, **kw):
    try:
        subprocess.run(cmd, stdout=DEVNULL, stderr=DEVNULL, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        pass
def pool(jobs, workers):
    with cf.ThreadPoolExecutor(workers) as ex:
        futs = [ex.submit(j) for j in jobs]
        for f in futs:
            try: f.result()
            except Exception as e: print(f"{mode}: job failed: {e!r}", file=sys.stderr)

www = os.path.join(work, "www")
pages = sorted(["/" + p for p in os.listdir(www) if p.endswith(".html")] + ["/blog/" + p for p in os.listdir(www + "/blog")])
assets = sorted(["/static/" + p for p in os.listdir(www + "/static")] + ["/img/" + p for p in os.listdir(www + "/img")])
small = pages + assets + ["/robots.txt", "/favicon.ico", "/", "/missing.html", "/old/page.php"]
large_w = [("/files/f200k.bin", 5), ("/files/f350k.bin", 4), ("/files/f600k.bin", 3), ("/files/f1m.bin", 2),
           ("/files/f2m.bin", 1), ("/files/f5m.bin", 0)]
UAS = ["Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
       "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36", None]

def web_jobs(tls, n_jobs, n_large):
    scheme, port = ("https", 443) if tls else ("http", 80)
    base = f"{scheme}://{srv}:{port}"
    k = ["-k"] if tls else []
    def curl_opts():
        o = ["-s", "-o", "/dev/null"] + k
        ua = rnd.choice(UAS)
        if ua: o += ["-A", ua]
        if rnd.random() < 0.4: o += ["--compressed"]
        if tls:
            r = rnd.random()
            if r < 0.3: o += ["--http2"]
            elif r < 0.5: o += ["--tlsv1.2", "--tls-max", "1.2"]
            else: o += ["--http1.1"]
        return o
    def j_curl1():
        u = rnd.choice(small); o = curl_opts()
        if rnd.random() < 0.1: o += ["-I"]
        return lambda: run(["curl"] + o + [base + u])
    def j_curlmulti():  # several requests on one keep-alive connection
        us = [base + rnd.choice(pages)] + [base + rnd.choice(assets) for _ in range(rnd.randint(1, 6))]
        o = curl_opts()
        cmd = ["curl"] + o[:3] + o[3:] + [x for u in us[1:] for x in ("-o", "/dev/null", u)] + [us[0]]
        return lambda: run(cmd)
    def j_wget():
        if rnd.random() < 0.5:  # page plus its requisites, like a browser, on one connection
            d = os.path.join(work, f"wget-{mode}-{rnd.randrange(1<<30)}")
            cmd = ["wget", "-q", "-p", "-P", d, base + rnd.choice(pages)]
        else:
            d = None; cmd = ["wget", "-q", "-O", "/dev/null", base + rnd.choice(small)]
        if tls: cmd.insert(1, "--no-check-certificate")
        def f():
            run(cmd)
            if d: subprocess.run(["rm", "-rf", d])
        return f
    def j_python():  # http.client keep-alive session with think time
        paths = [rnd.choice(pages)] + [rnd.choice(small) for _ in range(rnd.randint(1, 5))]
        waits = [rnd.choice([0, 0, 0.05, 0.2, 0.8, 1.5]) for _ in paths]
        def f():
            if tls:
                ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
                c = http.client.HTTPSConnection(srv, port, context=ctx, timeout=30)
            else:
                c = http.client.HTTPConnection(srv, port, timeout=30)
            for p, w in zip(paths, waits):
                time.sleep(w); c.request("GET", p, headers={"User-Agent": "python-urllib3/2.0"}); c.getresponse().read()
            c.close()
        return f
    def j_large():
        u = rnd.choices([u for u, _ in large_w], [w for _, w in large_w])[0]; o = curl_opts()
        r = rnd.random()
        if r < 0.2: o += ["--limit-rate", rnd.choice(["200k", "500k", "1m"])]
        elif r < 0.35: o += ["-r", f"0-{rnd.choice([65535, 131071, 262143])}"]
        return lambda: run(["curl"] + o + [base + u])
    kinds = [j_curl1] * 40 + [j_curlmulti] * 20 + [j_wget] * 18 + [j_python] * 22
    jobs = [rnd.choice(kinds)() for _ in range(n_jobs)] + [j_large() for _ in range(n_large)]
    rnd.shuffle(jobs)
    def paced(j):
        def f(): time.sleep(rnd.expovariate(1 / 0.35)); j()
        return f
    return [paced(j) for j in jobs]

def dns_jobs(n):
    names = [l.split()[1] for l in open(os.path.join(work, "dns", "hosts")) if l.strip()]
    cnames = [l.split(",")[0].split("=")[1] for l in open(os.path.join(work, "dns", "dnsmasq.conf")) if l.startswith("cname=")]
    mx = ["ntg.lan", "mail.ntg.lan", "corp.internal"]
    txt = ["ntg.lan", "_dmarc.ntg.lan", "selector1._domainkey.ntg.lan", "corp.internal"]
    jobs = []
    for _ in range(n):
        r = rnd.random()
        if r < 0.42: q = (rnd.choice(names + cnames), "A")
        elif r < 0.60: q = (rnd.choice(names), "AAAA")
        elif r < 0.68: q = (rnd.choice(mx), "MX")
        elif r < 0.76: q = (rnd.choice(txt), "TXT")
        elif r < 0.86: q = ("".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(rnd.randint(4, 14)))
                            + rnd.choice([".ntg.lan", ".corp.internal", ".svc.ntg.lan"]), rnd.choice(["A", "AAAA"]))
        elif r < 0.91: q = (f"{rnd.randint(1, 250)}.0.99.10.in-addr.arpa", "PTR")
        else: q = (rnd.choice(names), rnd.choice(["ANY", "SOA", "NS", "SRV"]))
        tool = rnd.random()
        if tool < 0.65:
            cmd = ["dig", f"@{srv}", q[0], q[1], "+tries=1", "+time=2"]
            if rnd.random() < 0.1: cmd.append("+tcp")
            if rnd.random() < 0.3: cmd.append("+dnssec")
            if rnd.random() < 0.2: cmd.append("+nocookie")
        elif tool < 0.85:
            cmd = ["host", "-W", "2", "-t", q[1], q[0], srv]
        else:  # a stub resolver looking up several names back to back (one socket per query)
            cmd = ["dig", f"@{srv}", "+tries=1", "+time=2"] + [x for _ in range(rnd.randint(2, 4))
                                                               for x in (rnd.choice(names), rnd.choice(["A", "AAAA"]))]
        jobs.append(cmd)
    def paced(cmd):
        def f(): time.sleep(rnd.expovariate(1 / 0.25)); run(cmd, timeout=15)
        return f
    return [paced(c) for c in jobs]

def ssh_jobs(n):
    key = os.path.join(work, "ssh", "id_client"); bad = os.path.join(work, "ssh", "id_bad")
    base_o = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
              "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
    ciphers = ["chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr",
               "aes256-ctr"]
    cmds = ["uptime", "uname -a", "cat /etc/os-release", "df -h", "ps aux | head -40", "date -u", "ls -la /etc | head -60",
            "seq 1 3000", "free -m", "id; hostname", "find /usr/share/doc -maxdepth 1 | head -150", "sleep 1; echo done",
            "cat /proc/cpuinfo | head -30", "ls /usr/bin | wc -l", "journalctl -n 20 2>/dev/null || dmesg 2>/dev/null | tail -20 || true",
            "for i in 1 2 3; do date +%s.%N; sleep 0.5; done", "tar cf - -C /usr/share/doc/openssh-client . 2>/dev/null | wc -c"]
    typed = ["ls", "pwd", "ls -la /tmp", "echo hello world", "cat /etc/hostname", "whoami", "uptime", "df -h /",
             "history | tail -5", "ps -ef | grep ssh", "top -bn1 | head -15", "cd /etc && ls | head", "date"]
    def opts(k=key):
        o = ["-i", k] + base_o
        if rnd.random() < 0.6: o += ["-c", rnd.choice(ciphers)]
        return o
    def j_exec():
        c = rnd.choice(cmds); o = opts()
        return lambda: run(["ssh"] + o + [f"root@{srv}", c], timeout=60)
    def j_multi():
        c = "; ".join(rnd.sample(cmds[:11], rnd.randint(2, 4))); o = opts()
        return lambda: run(["ssh"] + o + [f"root@{srv}", c], timeout=60)
    def j_interactive():  # a person typing: one keystroke per packet, pauses, then exit
        lines = rnd.sample(typed, rnd.randint(2, 6)) + ["exit"]
        gaps = [[rnd.uniform(0.04, 0.25) for _ in l] for l in lines]
        think = [rnd.uniform(0.3, 2.5) for _ in lines]
        o = opts()
        def f():
            p = subprocess.Popen(["ssh", "-tt"] + o + [f"root@{srv}"], stdin=subprocess.PIPE, stdout=DEVNULL, stderr=DEVNULL)
            try:
                time.sleep(1.0)
                for l, g, t in zip(lines, gaps, think):
                    time.sleep(t)
                    for ch, d in zip(l, g):
                        p.stdin.write(ch.encode()); p.stdin.flush(); time.sleep(d)
                    p.stdin.write(b"\n"); p.stdin.flush()
                p.wait(timeout=20)
            except Exception:
                p.kill(); p.wait()
        return f
    def j_scp_up():
        f = rnd.choices(["u1k", "u8k", "u40k", "u150k", "u400k", "u900k", "u1500k"], [4, 5, 4, 3, 2, 1, 1])[0]
        o = opts()
        return lambda: run(["scp", "-q"] + o + [os.path.join(work, "clifiles", f + ".dat"), f"root@{srv}:{work}/srvfiles/up-{rnd.randrange(1<<30)}.dat"], timeout=90)
    def j_scp_down():
        f = rnd.choices(["d1k", "d8k", "d40k", "d150k", "d400k", "d900k", "d1500k"], [4, 5, 4, 3, 2, 1, 1])[0]
        o = opts()
        return lambda: run(["scp", "-q"] + o + [f"root@{srv}:{work}/srvfiles/{f}.dat", "/dev/null"], timeout=90)
    def j_badkey():
        o = opts(bad)
        return lambda: run(["ssh"] + o + [f"root@{srv}", "true"], timeout=30)
    def j_keyscan():
        return lambda: run(["ssh-keyscan", "-T", "5", "-t", rnd.choice(["ed25519", "ecdsa", "rsa"]), srv], timeout=15)
    kinds = [j_exec] * 34 + [j_multi] * 12 + [j_interactive] * 18 + [j_scp_up] * 12 + [j_scp_down] * 12 + \
            [j_badkey] * 6 + [j_keyscan] * 6
    jobs = [rnd.choice(kinds)() for _ in range(n)]
    def paced(j):
        def f(): time.sleep(rnd.expovariate(1 / 0.6)); j()
        return f
    return [paced(j) for j in jobs]

def video_jobs(n_sessions, n_probe):
    """HLS/DASH-like players against the paced segment server (see video_server.py)."""
    port = 8080
    rends = ["240p", "360p", "480p", "720p"]
    def get(c, path, hdr=None):
        c.request("GET", path, headers=hdr or {}); r = c.getresponse(); return r.read()
    def session(style, nseg, start_r):
        def f():
            r = start_r; first = rnd.randrange(0, 400)
            conn = lambda: http.client.HTTPConnection(srv, port, timeout=30)
            if style == "one":      # playlist + all segments on one keep-alive connection
                c = conn(); get(c, "/live/master.m3u8"); get(c, f"/live/{rends[r]}/index.m3u8")
                for i in range(nseg):
                    get(c, f"/live/{rends[r]}/seg{first + i:05d}.m4s")
                    r = max(0, min(len(rends) - 1, r + rnd.choice([0, 0, 0, 1, -1])))
                    time.sleep(rnd.uniform(0.5, 2.0))
                c.close()
            elif style == "split":  # live: playlist refreshed on one connection, segments on another
                cp, cs = conn(), conn(); get(cp, "/live/master.m3u8")
                for i in range(nseg):
                    get(cp, f"/live/{rends[r]}/index.m3u8")
                    get(cs, f"/live/{rends[r]}/seg{first + i:05d}.m4s")
                    time.sleep(rnd.uniform(0.5, 2.0))
                cp.close(); cs.close()
            else:                   # a connection per request (Connection: close players)
                for p in ["/live/master.m3u8", f"/live/{rends[r]}/index.m3u8"] + \
                         [f"/live/{rends[r]}/seg{first + i:05d}.m4s" for i in range(nseg)]:
                    c = conn(); get(c, p, {"Connection": "close"}); c.close()
                    if p.endswith(".m4s"): time.sleep(rnd.uniform(0.5, 2.0))
        return f
    def probe():  # player start-up abandoned: manifests, maybe a first segment cut short, then gone
        def f():
            c = http.client.HTTPConnection(srv, port, timeout=30)
            get(c, "/live/master.m3u8")
            if rnd.random() < 0.7: get(c, f"/live/{rnd.choice(rends[:2])}/index.m3u8")
            if rnd.random() < 0.5:
                c.request("GET", f"/live/{rnd.choice(rends)}/seg{rnd.randrange(400):05d}.m4s")
                r = c.getresponse(); r.read(rnd.choice([1500, 8000, 30000])); time.sleep(rnd.uniform(0.05, 0.4))
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            c.close()
        return f
    jobs = []
    for _ in range(n_sessions):
        style = rnd.choices(["one", "split", "each"], [3, 3, 5])[0]
        jobs.append(session(style, rnd.randint(2, 5), rnd.choices([0, 1, 2, 3], [5, 4, 2, 1])[0]))
    jobs += [probe() for _ in range(n_probe)]
    rnd.shuffle(jobs)
    def paced(j):
        def f(): time.sleep(rnd.expovariate(1 / 1.0)); j()
        return f
    return [paced(j) for j in jobs]

N = lambda k, d: int(os.environ.get(k, d))
if mode == "http": pool(web_jobs(False, N("HTTP_JOBS", 250), N("HTTP_LARGE", 4)), 3)
elif mode == "https": pool(web_jobs(True, N("HTTPS_JOBS", 250), N("HTTPS_LARGE", 4)), 3)
elif mode == "dns": pool(dns_jobs(N("DNS_JOBS", 340)), 4)
elif mode == "ssh": pool(ssh_jobs(N("SSH_JOBS", 150)), 4)
elif mode == "video": pool(video_jobs(N("VIDEO_SESSIONS", 14), N("VIDEO_PROBES", 70)), 4)
else: sys.exit(f"unknown mode {mode}")
EOF

cat >"$WORK/video_server.py" <<'EOF'
"""Paced HLS-like segment server: playlists plus segments of ~100-500 KB (size by rendition), sent in 16 KB writes at
the rendition's pacing rate, HTTP/1.1 keep-alive."""
import hashlib, http.server, os, sys, time
RENDS = {"240p": (90_000, 160_000, 6e6), "360p": (150_000, 260_000, 10e6), "480p": (240_000, 360_000, 16e6),
         "720p": (330_000, 500_000, 24e6)}  # min size, max size, pacing bit/s
BLOB = os.urandom(600_000)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"; server_version = "ntg-vod/1.0"
    def log_message(self, *a): pass
    def send(self, body, ctype, rate=None):
        self.send_response(200); self.send_header("Content-Type", ctype); self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=2" if ctype.endswith("mpegurl") else "max-age=3600"); self.end_headers()
        step = 16384; t0 = time.monotonic()
        for off in range(0, len(body), step):
            self.wfile.write(body[off:off + step])
            if rate:
                ahead = t0 + (off + step) * 8 / rate - time.monotonic()
                if ahead > 0: time.sleep(ahead)
    def do_GET(self):
        p = self.path.strip("/").split("/")
        if p == ["live", "master.m3u8"]:
            body = "#EXTM3U\n#EXT-X-VERSION:6\n" + "".join(
                f"#EXT-X-STREAM-INF:BANDWIDTH={int(v[2] / 8)},RESOLUTION={k}\n{k}/index.m3u8\n" for k, v in RENDS.items())
            return self.send(body.encode(), "application/vnd.apple.mpegurl")
        if len(p) == 3 and p[0] == "live" and p[1] in RENDS:
            if p[2] == "index.m3u8":
                seq = int(time.time() / 2) % 400
                body = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:%d\n" % seq + "".join(
                    f"#EXTINF:2.000,\nseg{(seq + i) % 400:05d}.m4s\n" for i in range(6))
                return self.send(body.encode(), "application/vnd.apple.mpegurl")
            if p[2].startswith("seg") and p[2].endswith(".m4s"):
                lo, hi, rate = RENDS[p[1]]
                h = int(hashlib.md5(self.path.encode()).hexdigest()[:8], 16)
                size = lo + h % (hi - lo)
                return self.send((BLOB * 2)[h % 100_000: h % 100_000 + size], "video/iso.segment", rate)
        self.send_response(404); self.send_header("Content-Length", "0"); self.end_headers()
http.server.ThreadingHTTPServer.daemon_threads = True
http.server.ThreadingHTTPServer((sys.argv[1], 8080), H).serve_forever()
EOF

# --------------------------------------------------------------------------------------------------------- servers
start_bg() {  # start_bg LOG cmd...  (background, remembered for cleanup)
  local log=$1; shift
  "$@" >"$log" 2>&1 &
  PIDS+=($!)
}

start_nginx() {
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=www.ntg.lan" \
    -addext "subjectAltName=DNS:www.ntg.lan,IP:$SRV_IP" -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
  mkdir -p "$WORK/nginx"
  cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 2;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 512; }
http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log off;
  sendfile on; tcp_nopush on; keepalive_timeout 15s; keepalive_requests 100;
  gzip on; gzip_types text/css application/javascript text/plain; gzip_min_length 512;
  client_body_temp_path $WORK/nginx/body; proxy_temp_path $WORK/nginx/proxy; fastcgi_temp_path $WORK/nginx/fcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi; scgi_temp_path $WORK/nginx/scgi;
  server {
    listen $SRV_IP:80; listen $SRV_IP:443 ssl http2;
    server_name www.ntg.lan;
    ssl_certificate $WORK/tls.crt; ssl_certificate_key $WORK/tls.key;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:1m;
    root $WORK/www; index index.html;
  }
}
EOF
  start_bg "$WORK/nginx/stdout.log" ip netns exec "$SRV_NS" nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx"
}

start_dnsmasq() {
  mkdir -p "$WORK/dns"
  "$PY" - "$WORK/dns" "$SEED" <<'EOF'
import random, sys
d, seed = sys.argv[1], int(sys.argv[2]); rnd = random.Random(seed)
svc = ["www", "mail", "api", "cdn", "git", "wiki", "vpn", "db", "cache", "auth", "static", "img", "login", "ntp", "ldap",
       "build", "ci", "grafana", "prom", "files", "backup", "docs", "shop", "blog", "m", "news", "chat", "voip", "proxy"]
zones = ["ntg.lan", "corp.internal", "lab.ntg.lan", "svc.ntg.lan"]
hosts, cn = [], []
for z in zones:
    for s in rnd.sample(svc, 22):
        ips = [f"10.99.{rnd.randint(1, 3)}.{rnd.randint(1, 250)}" for _ in range(rnd.choice([1, 1, 1, 2, 3]))]
        for ip in ips: hosts.append(f"{ip} {s}.{z}")
        if rnd.random() < 0.5: hosts.append(f"fd00:99::{rnd.randint(1, 0xffff):x} {s}.{z}")
for i in range(24):
    z = rnd.choice(zones); cn.append(f"cname=alias{i}.{z},{rnd.choice(hosts).split()[1]}")
open(f"{d}/hosts", "w").write("\n".join(hosts) + "\n")
conf = ["no-resolv", "no-hosts", "no-poll", f"addn-hosts={d}/hosts", "local=/ntg.lan/", "local=/internal/",
        "local=/99.10.in-addr.arpa/", "domain-needed", "bogus-priv", "cache-size=1000", "user=root",
        "mx-host=ntg.lan,mail.ntg.lan,10", "mx-host=ntg.lan,mx2.ntg.lan,20", "mx-host=mail.ntg.lan,mail.ntg.lan,10",
        "mx-host=corp.internal,mail.corp.internal,5",
        'txt-record=ntg.lan,"v=spf1 mx ip4:10.99.0.0/24 -all"', 'txt-record=ntg.lan,"site-verification=ntg-edge-7f3a9c"',
        'txt-record=_dmarc.ntg.lan,"v=DMARC1; p=reject; rua=mailto:dmarc@ntg.lan"',
        'txt-record=selector1._domainkey.ntg.lan,"v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAr1x2' + "Q" * 180 + 'IDAQAB"',
        'txt-record=corp.internal,"v=spf1 include:ntg.lan ~all"',
        "srv-host=_ldap._tcp.corp.internal,ldap.corp.internal,389", "srv-host=_sip._udp.ntg.lan,voip.ntg.lan,5060"] + cn
open(f"{d}/dnsmasq.conf", "w").write("\n".join(conf) + "\n")
EOF
  start_bg "$WORK/dns/stdout.log" ip netns exec "$SRV_NS" dnsmasq --keep-in-foreground --conf-file="$WORK/dns/dnsmasq.conf" \
    --listen-address="$SRV_IP" --bind-interfaces --pid-file="$WORK/dns/pid"
}

start_sshd() {
  mkdir -p /run/sshd  # privilege-separation directory sshd insists on
  ssh-keygen -q -t ed25519 -N "" -f "$WORK/ssh/host_ed25519" -C host
  ssh-keygen -q -t ecdsa -N "" -f "$WORK/ssh/host_ecdsa" -C host
  ssh-keygen -q -t rsa -b 3072 -N "" -f "$WORK/ssh/host_rsa" -C host
  ssh-keygen -q -t ed25519 -N "" -f "$WORK/ssh/id_client" -C client
  ssh-keygen -q -t ed25519 -N "" -f "$WORK/ssh/id_bad" -C bad
  cp "$WORK/ssh/id_client.pub" "$WORK/ssh/authorized_keys"
  cat >"$WORK/ssh/sshd_config" <<EOF
ListenAddress $SRV_IP
Port 22
HostKey $WORK/ssh/host_ed25519
HostKey $WORK/ssh/host_ecdsa
HostKey $WORK/ssh/host_rsa
PidFile $WORK/ssh/sshd.pid
AuthorizedKeysFile $WORK/ssh/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
PrintMotd no
PrintLastLog no
UseDNS no
MaxStartups 64:30:128
LogLevel ERROR
Subsystem sftp internal-sftp
EOF
  start_bg "$WORK/ssh/sshd.log" ip netns exec "$SRV_NS" /usr/sbin/sshd -D -e -f "$WORK/ssh/sshd_config"
}

start_video() {
  start_bg "$WORK/video.log" ip netns exec "$SRV_NS" "$PY" "$WORK/video_server.py" "$SRV_IP"
}

wait_port() {  # wait_port PROTO PORT
  local i
  for i in $(seq 1 50); do
    if in_srv ss -Hln"$1" "sport = :$2" | grep -q .; then return 0; fi
    sleep 0.2
  done
  echo "record.sh: server on $1/$2 did not come up" >&2; return 1
}

# ----------------------------------------------------------------------------------------------------------- record
capture() {  # capture SERVICE : run the client driver under a tcpdump on the server's veth
  local svc=$1 dir="$WORK/out/$svc" tpid
  mkdir -p "$dir"
  ip netns exec "$SRV_NS" tcpdump -i "$SRV_IF" -n -s "$SNAPLEN" -Z root -U -w "$dir/$svc.pcap" \
    "ip and net 10.99.0.0/24" 2>"$WORK/tcpdump-$svc.log" &
  tpid=$!; PIDS+=("$tpid")
  sleep 1.5
  echo "[$(date +%T)] $svc: clients running"
  in_cli "$PY" "$WORK/driver.py" "$svc" "$WORK" "$SRV_IP" "$SEED"
  sleep 2  # let the last FIN/ACKs arrive
  kill -INT "$tpid"; wait "$tpid" || true
  echo "[$(date +%T)] $svc: $(tail -n 2 "$WORK/tcpdump-$svc.log" | tr '\n' ' ')"
}

have_nginx=0
for svc in "${SERVICES[@]}"; do
  case $svc in
    http|https) if [ $have_nginx = 0 ]; then start_nginx; have_nginx=1; fi
                wait_port t 80; wait_port t 443 ;;
    dns)   start_dnsmasq; wait_port u 53 ;;
    ssh)   start_sshd; wait_port t 22 ;;
    video) start_video; wait_port t 8080 ;;
    *) echo "record.sh: unknown service $svc" >&2; exit 1 ;;
  esac
  capture "$svc"
done

# -------------------------------------------------------------------------------------------------------- summary
"$PY" - "$WORK/out" <<'EOF'
import os, struct, sys
from collections import Counter
root = sys.argv[1]
for svc in sorted(os.listdir(root)):
    for fn in sorted(os.listdir(f"{root}/{svc}")):
        path = f"{root}/{svc}/{fn}"; b = open(path, "rb").read()
        le = b[:4] == b"\xd4\xc3\xb2\xa1"; e = "<" if le else ">"
        off, n, maxlen, flows, proto = 24, 0, 0, set(), Counter()
        while off + 16 <= len(b):
            _, _, incl, orig = struct.unpack(e + "IIII", b[off:off + 16]); pkt = b[off + 16:off + 16 + incl]; off += 16 + incl
            n += 1; maxlen = max(maxlen, orig)
            if len(pkt) >= 34 and pkt[12:14] == b"\x08\x00":
                ihl = (pkt[14] & 15) * 4; pr = pkt[23]; s, d = pkt[26:30], pkt[30:34]
                if pr in (6, 17) and len(pkt) >= 14 + ihl + 4:
                    sp, dp = struct.unpack("!HH", pkt[14 + ihl:18 + ihl])
                    flows.add((pr,) + tuple(sorted([(s, sp), (d, dp)]))); proto[pr] += 1
        tcp = sum(1 for f in flows if f[0] == 6); udp = len(flows) - tcp
        print(f"{svc}/{fn}: {os.path.getsize(path)} bytes, {n} packets, {tcp} TCP + {udp} UDP flows (5-tuple), "
              f"largest frame {maxlen} bytes")
        if maxlen > 1514: sys.exit(f"{path}: frame of {maxlen} bytes: offloads were not off")
EOF
total=$(du -cb "$WORK"/out/*/*.pcap | tail -1 | cut -f1)
keep=0
if [ -d "$DEST" ]; then  # services not recorded this time keep their current files
  for d in "$DEST"/*/; do
    [ -d "$d" ] || continue; s=$(basename "$d")
    [ -d "$WORK/out/$s" ] || keep=$((keep + $(du -cb "$d"*.pcap 2>/dev/null | tail -1 | cut -f1)))
  done
fi
echo "corpus: $((total + keep)) bytes (cap $MAX_TOTAL)"
[ $((total + keep)) -le "$MAX_TOTAL" ] || { echo "record.sh: over the size cap, nothing replaced" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------------- move in place
mkdir -p "$DEST"
for d in "$WORK"/out/*/; do
  s=$(basename "$d")
  rm -rf "$DEST/.$s.new" "$DEST/.$s.old"
  cp -r "$d" "$DEST/.$s.new"
  chmod 644 "$DEST/.$s.new"/*.pcap
  [ -d "$DEST/$s" ] && mv "$DEST/$s" "$DEST/.$s.old"
  mv "$DEST/.$s.new" "$DEST/$s"
  rm -rf "$DEST/.$s.old"
done
echo "done: $(ls "$DEST")"
