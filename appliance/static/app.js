// The status page: everything shown comes from the versioned API, refreshed every 2 s. No framework, no CDN.
"use strict";

const REFRESH_MS = 2000;

function headers() {
  const token = sessionStorage.getItem("ntg-token");
  return token ? { Authorization: "Bearer " + token } : {};
}

async function api(path) {
  const r = await fetch("/v1/" + path, { headers: headers() });
  if (r.status === 401) {
    document.getElementById("auth").hidden = false;
    throw new Error("unauthorized");
  }
  if (!r.ok && r.status !== 503) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

function set(id, text) {
  document.getElementById(id).textContent = text;
}

function fmt(x, digits) {
  return x === null || x === undefined ? "-" : Number(x).toFixed(digits);
}

function sum(obj) {
  return Object.values(obj).reduce((a, b) => a + b, 0);
}

async function refreshStatic() {
  const b = await api("bundle");
  set("bundle-path", b.path);
  set("classes", b.classes.join(", "));
  set("precision", (b.config && b.config.precision) || "-");
}

function renderLive(live) {
  if (!live.enabled) {
    set("live-summary", "off (serve --capture IFACE)");
    return;
  }
  set("live-iface", "on " + live.interface + (live.running ? "" : " (stopped)"));
  const counts = Object.entries(live.counts).map(([c, n]) => c + " " + n).join(", ");
  set("live-summary", live.flows_seen + " flows seen" + (counts ? ": " + counts : "") +
      (live.error ? " - error: " + live.error : ""));
  const body = document.getElementById("live-recent");
  body.replaceChildren(...live.recent.map((p) => {
    const tr = document.createElement("tr");
    const cells = [new Date(p.time * 1000).toLocaleTimeString(),
      p.src_ip + ":" + p.src_port + " → " + p.dst_ip + ":" + p.dst_port + (p.protocol === 6 ? " tcp" : " udp"),
      p.packets + (p.ended ? " (ended)" : ""), p.label, fmt(p.probability, 2)];
    for (const text of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    return tr;
  }));
}

async function refresh() {
  try {
    const ready = await api("health/ready");
    const pill = document.getElementById("status");
    pill.textContent = ready.ready ? "ready" : "not ready: " + ready.reasons.join("; ");
    pill.className = "pill " + (ready.ready ? "ok" : "bad");
    const [stats, clf, aug, live] = await Promise.all([api("stats"), api("classifier"), api("augment"), api("live")]);
    set("gen-rate", fmt(stats.generate_per_s, 1));
    set("gen-total", sum(stats.generated));
    set("cls-rate", fmt(stats.classify_per_s, 1));
    set("cls-total", sum(stats.classified));
    set("streams", stats.stream_clients);
    set("clf-version", clf.loaded ? "v" + clf.version + " (" + clf.kind + ")" : "none yet");
    set("clf-f1", fmt(clf.macro_f1, 3));
    set("aug-state", aug.state + (aug.error ? ": " + aug.error : "") + (aug.state === "done" ?
      (aug.swapped ? ", swapped in v" + aug.version : ", kept v" + aug.version) : ""));
    set("aug-before", fmt(aug.before_f1, 3));
    set("aug-after", fmt(aug.after_f1, 3));
    renderLive(live);
  } catch (e) {
    document.getElementById("status").textContent = "unreachable: " + e.message;
  }
}

document.getElementById("auth").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("ntg-token", document.getElementById("token").value);
  document.getElementById("auth").hidden = true;
  start();
});

async function start() {
  try {
    await refreshStatic();
  } catch (e) {
    document.getElementById("status").textContent = "unreachable: " + e.message;
    return;
  }
  await refresh();
  setInterval(refresh, REFRESH_MS);
}

start();
