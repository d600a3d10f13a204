"""Live capture on a real interface: a network namespace joined to this one by a veth pair, an HTTP server and a
DNS-style UDP responder inside it, real traffic made by the test; the flows the appliance sees and classifies must be
exactly the connections and queries that were made."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import uuid

import pytest
from fastapi.testclient import TestClient

from ntg_edge.appliance.server import create_app

from test_server import make_appliance

HOST_IP, PEER_IP = "10.213.77.1", "10.213.77.2"  # a /30 that exists only between this test's veth pair
HTTP_PORT, DNS_PORT, FLUSH_PORT = 8053, 5353, 5999
# the flows' idle timeout: long enough that a server slowed by a busy machine does not split a connection in two
IDLE_S = 3.0

_SERVERS = f"""
import http.server, socket, threading
def dns():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("{PEER_IP}", {DNS_PORT}))
    while True:
        q, peer = s.recvfrom(2048)
        s.sendto(q[:2] + b"\\x81\\x80" + q[4:] + b"\\xc0\\x0c\\x00\\x01\\x00\\x01\\x00\\x00\\x00\\x3c\\x00\\x04" + bytes([{PEER_IP.replace('.', ',')}]), peer)
threading.Thread(target=dns, daemon=True).start()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"x" * 3000
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("{PEER_IP}", {HTTP_PORT}), H).serve_forever()
"""


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


@pytest.fixture
def veth():
    """(host-side interface, namespace) with the servers running inside the namespace; all removed afterwards."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to make a network namespace and a veth pair")
    tag = uuid.uuid4().hex[:6]
    ns, host, peer = f"ntgtest-{tag}", f"ntgh{tag}", f"ntgp{tag}"
    try:
        _run("ip", "netns", "add", ns)
    except subprocess.CalledProcessError as e:
        pytest.skip(f"cannot make a network namespace here: {e.stderr.decode().strip()}")
    servers = None
    try:
        _run("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
        _run("ip", "link", "set", peer, "netns", ns)
        _run("ip", "addr", "add", f"{HOST_IP}/30", "dev", host)
        _run("ip", "link", "set", host, "up")
        _run("ip", "netns", "exec", ns, "ip", "addr", "add", f"{PEER_IP}/30", "dev", peer)
        _run("ip", "netns", "exec", ns, "ip", "link", "set", peer, "up")
        _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        servers = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", _SERVERS])
        deadline = time.monotonic() + 10
        while True:  # wait for the HTTP server to listen
            try:
                socket.create_connection((PEER_IP, HTTP_PORT), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "servers in the namespace did not start"
                time.sleep(0.1)
        yield host, ns
    finally:
        if servers is not None:
            servers.kill()
            servers.wait()
        subprocess.run(["ip", "link", "del", host], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _dns_query(name: str, qid: int) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\x00\x00\x01\x00\x01"


def test_live_capture_sees_and_classifies_the_traffic_made(veth, tiny_bundles, real_files, tmp_path):
    iface, _ = veth
    app_ = make_appliance(tiny_bundles["int8"], tmp_path / "clf", real_files["train"],
                          capture={"interface": iface, "bpf": f"host {PEER_IP}", "classify_at": 4,
                                   "idle_timeout": IDLE_S})
    with TestClient(create_app(app_)) as c:
        time.sleep(0.5)  # let the capture open before the traffic starts
        made: set[tuple[int, int, int]] = set()  # (client port, server port, protocol)
        for i in range(5):  # five HTTP/1.1 requests, each on its own connection: five TCP flows
            conn = http.client.HTTPConnection(PEER_IP, HTTP_PORT, timeout=5)
            conn.request("GET", f"/page{i}", headers={"Connection": "close"})
            made.add((conn.sock.getsockname()[1], HTTP_PORT, 6))
            assert conn.getresponse().read() == b"x" * 3000
            conn.close()
        for i in range(4):  # four DNS queries from fresh sockets: four UDP flows (query + answer)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(5)
                s.sendto(_dns_query(f"host{i}.example.test", 100 + i), (PEER_IP, DNS_PORT))
                assert s.recv(2048)[:2] == struct.pack("!H", 100 + i)
                made.add((s.getsockname()[1], DNS_PORT, 17))
        time.sleep(IDLE_S + 0.5)  # past the idle timeout: the next packet ends the UDP flows
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # the flush packet: a flow that stays open
            s.sendto(b"flush", (PEER_IP, FLUSH_PORT))
        deadline = time.monotonic() + 10
        while (live := c.get("/v1/live", params={"recent": 100}).json())["flows_seen"] < len(made):
            assert time.monotonic() < deadline, live
            time.sleep(0.2)
        time.sleep(0.5)  # nothing else may arrive
        live = c.get("/v1/live", params={"recent": 100}).json()
        metrics = c.get("/v1/metrics").text
    assert live["enabled"] and live["running"] and live["error"] is None
    assert live["flows_seen"] == len(made) == 9 and live["unclassified"] == 0, live["recent"]
    seen = {(p["src_port"], p["dst_port"], p["protocol"]) for p in live["recent"]}
    assert seen == made
    by_proto = {6: [], 17: []}
    for p in live["recent"]:
        assert p["src_ip"] == HOST_IP and p["dst_ip"] == PEER_IP
        assert p["label"] in app_.classes and 0 < p["probability"] <= 1
        by_proto[p["protocol"]].append(p)
    assert all(p["packets"] == 4 and not p["ended"] for p in by_proto[6])  # classified at 4 packets, while open
    assert all(p["packets"] == 2 and p["ended"] for p in by_proto[17])  # query + answer, ended by the idle timeout
    assert sum(live["counts"].values()) == 9
    assert "ntg_live_flows_total 9.0" in metrics
    live_total = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                     if line.startswith("ntg_flows_classified_total{") and 'source="live"' in line)
    assert live_total == 9
