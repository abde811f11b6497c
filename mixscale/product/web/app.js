// mixscale web page: upload -> /v1/analyze -> /v1/master -> A/B listen -> download -> /v1/feedback.
// Plain JS, no build step. The server names every answer's request id (X-Request-Id) and the
// model version that served it (X-Mixscale-Version); feedback sends those request ids back.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  file: null,          // the uploaded File
  originalUrl: null,   // object URL of the upload
  analysis: null,      // /v1/analyze answer
  renders: [],         // [{n, requestId, version, settings, url, settingsUrl, targetLufs, name}]
  current: null,       // the selected render
  listening: "master", // "original" | "master"
};

// ------------------------------------------------------------------ helpers

function fmt(x, digits, unit) {
  return x === null || x === undefined || !isFinite(x) ? "-" : `${x.toFixed(digits)} ${unit}`;
}

function setStatus(el, text, isError) {
  el.textContent = text;
  el.classList.toggle("error", !!isError);
}

async function errorText(resp) {
  try {
    const body = await resp.json();
    if (body.error) return `${body.error.message} (${body.error.code}, HTTP ${resp.status})`;
  } catch (e) { /* not JSON */ }
  return `HTTP ${resp.status}`;
}

function stemName(file) {
  return (file && file.name ? file.name.replace(/\.[^.]+$/, "") : "track") || "track";
}

// ------------------------------------------------------------------ sliders from the schema

async function initSliders() {
  const resp = await fetch("/v1/ui-config");
  const ui = await resp.json();
  const bind = (id, cfg, show) => {
    const input = $(id);
    input.min = cfg.min; input.max = cfg.max; input.step = cfg.step; input.value = cfg.default;
    const out = $(`${id}-out`);
    const update = () => { out.textContent = show(parseFloat(input.value), cfg.unit); };
    input.addEventListener("input", update);
    update();
  };
  bind("target", ui.target_lufs, (v, u) => `${v.toFixed(1)} ${u}`);
  bind("ceiling", ui.ceiling, (v, u) => `${v.toFixed(1)} ${u}`);
  bind("intensity", ui.intensity, (v) => `${Math.round(v * 100)} %`);
}

// ------------------------------------------------------------------ analysis

async function analyze(file) {
  const status = $("status");
  setStatus(status, `Analyzing ${file.name}...`);
  const form = new FormData();
  form.append("file", file);
  const resp = await fetch("/v1/analyze", { method: "POST", body: form });
  if (!resp.ok) { setStatus(status, `Analysis failed: ${await errorText(resp)}`, true); return; }
  const a = await resp.json();
  state.analysis = a;
  const loud = a.loudness || {};
  $("lufs").textContent = fmt(loud.integrated_lufs, 1, "LUFS");
  $("tp").textContent = fmt(loud.true_peak_dbtp, 1, "dBTP");
  $("lra").textContent = fmt(loud.loudness_range_lu, 1, "LU");
  $("genre").textContent = a.genre ? a.genre.label : "-";
  $("analysis-version").textContent = a.model_version ? `model ${a.model_version}` : "";
  drawGenres(a.genre ? a.genre.probabilities : {});
  await drawEq(a.settings || {});
  $("analysis").hidden = false;
  $("master-section").hidden = false;
  setStatus(status, `Analyzed ${file.name} (${fmt(a.duration_s, 1, "s")}). Set the sliders and master it.`);
  document.body.dataset.analyzed = "1";
}

function drawGenres(probs) {
  const list = $("genres");
  list.replaceChildren();
  const top = Object.entries(probs).sort((x, y) => y[1] - x[1]).slice(0, 6);
  const most = top.length ? top[0][1] : 1;
  for (const [name, p] of top) {
    const li = document.createElement("li");
    const label = document.createElement("span"); label.textContent = name;
    const track = document.createElement("span");
    const bar = document.createElement("span"); bar.className = "bar"; bar.style.display = "block";
    bar.style.width = `${Math.max(2, (p / most) * 100)}%`; // relative to the most likely genre
    track.appendChild(bar);
    const pct = document.createElement("span"); pct.className = "pct"; pct.textContent = `${(p * 100).toFixed(1)}%`;
    li.append(label, track, pct);
    list.appendChild(li);
  }
}

// The curve comes from the server (mixscale.fx.eq.eq_response_db): one implementation of the EQ.
async function drawEq(settings) {
  const eqOnly = Object.fromEntries(Object.entries(settings).filter(([k]) => k.startsWith("eq.")));
  const url = `/v1/eq-curve?points=200&settings=${encodeURIComponent(JSON.stringify(eqOnly))}`;
  const resp = await fetch(url);
  const svg = $("eq-plot");
  if (!resp.ok) { svg.textContent = ""; return; }
  const c = await resp.json();
  const W = 600, H = 240, L = 34, R = 8, T = 8, B = 22;
  const maxDb = Math.max(6, Math.ceil(Math.max(...c.gain_db.map(Math.abs)) / 3) * 3);
  const lo = Math.log10(c.freqs_hz[0]), hi = Math.log10(c.freqs_hz[c.freqs_hz.length - 1]);
  const x = (f) => L + (Math.log10(f) - lo) / (hi - lo) * (W - L - R);
  const y = (db) => T + (maxDb - db) / (2 * maxDb) * (H - T - B);
  const ns = "http://www.w3.org/2000/svg";
  const el = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  svg.replaceChildren();
  for (const f of [20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000]) {
    svg.appendChild(el("line", { x1: x(f), x2: x(f), y1: T, y2: H - B, class: "grid" }));
    svg.appendChild(el("text", { x: x(f), y: H - 6, "text-anchor": "middle" }, f >= 1000 ? `${f / 1000}k` : `${f}`));
  }
  for (const db of [-maxDb, -maxDb / 2, 0, maxDb / 2, maxDb]) {
    svg.appendChild(el("line", { x1: L, x2: W - R, y1: y(db), y2: y(db), class: db === 0 ? "zero" : "grid" }));
    svg.appendChild(el("text", { x: L - 4, y: y(db) + 4, "text-anchor": "end" }, `${db > 0 ? "+" : ""}${db}`));
  }
  const d = c.freqs_hz.map((f, i) => `${i ? "L" : "M"}${x(f).toFixed(1)},${y(c.gain_db[i]).toFixed(1)}`).join("");
  svg.appendChild(el("path", { d, class: "curve", id: "eq-curve" }));
}

// ------------------------------------------------------------------ mastering

async function master() {
  const status = $("status");
  const btn = $("master-btn");
  btn.disabled = true;
  const targetLufs = parseFloat($("target").value);
  const intensity = parseFloat($("intensity").value);
  const form = new FormData();
  form.append("file", state.file);
  form.append("target_lufs", $("target").value);
  form.append("ceiling", $("ceiling").value);
  form.append("intensity", $("intensity").value);
  setStatus(status, "Mastering...");
  try {
    const resp = await fetch("/v1/master", { method: "POST", body: form });
    if (!resp.ok) { setStatus(status, `Mastering failed: ${await errorText(resp)}`, true); return; }
    const blob = await resp.blob();
    const settings = JSON.parse(resp.headers.get("X-Mixscale-Settings") || "{}");
    const n = state.renders.length + 1;
    const render = {
      n, requestId: resp.headers.get("X-Request-Id"), version: resp.headers.get("X-Mixscale-Version"),
      settings, targetLufs, intensity, url: URL.createObjectURL(blob),
      settingsUrl: URL.createObjectURL(new Blob([JSON.stringify(settings, null, 2)], { type: "application/json" })),
      name: `${stemName(state.file)}.master${n > 1 ? n : ""}`,
    };
    state.renders.push(render);
    selectRender(render);
    $("listen").hidden = false;
    $("feedback").hidden = false;
    updatePreference();
    setStatus(status, `Master ${n} ready (model ${render.version || "?"}, request ${render.requestId}).`);
  } finally {
    btn.disabled = false;
  }
}

function selectRender(render) {
  state.current = render;
  $("dl-master").href = render.url;
  $("dl-master").download = `${render.name}.wav`;
  $("dl-settings").href = render.settingsUrl;
  $("dl-settings").download = `${render.name}.settings.json`;
  const list = $("renders");
  list.replaceChildren();
  for (const r of state.renders) {
    const li = document.createElement("li");
    li.className = r === state.current ? "current" : "";
    li.textContent = `Master ${r.n}: ${r.targetLufs} LUFS, intensity ${Math.round(r.intensity * 100)} %, ` +
      `model ${r.version || "?"}`;
    if (r !== state.current) {
      const b = document.createElement("button");
      b.type = "button"; b.textContent = "select"; b.addEventListener("click", () => selectRender(r));
      li.appendChild(b);
    }
    list.appendChild(li);
  }
  listen("master");
}

// A/B at matched loudness: the louder of the two plays quieter by the loudness difference
// (original: the measured integrated loudness; master: its target, which mastering meets within 0.5 LU).
function listen(which) {
  const player = $("player");
  const wasPlaying = !player.paused;
  const t = player.currentTime || 0;
  state.listening = which;
  const src = which === "original" ? state.originalUrl : state.current.url;
  if (player.src !== src) player.src = src;
  const orig = state.analysis && state.analysis.loudness ? state.analysis.loudness.integrated_lufs : null;
  const mast = state.current.targetLufs;
  let gainDb = 0;
  if (orig !== null && isFinite(orig)) {
    const diff = orig - mast; // > 0: the original is louder
    gainDb = which === "original" ? Math.min(0, -diff) : Math.min(0, diff);
    $("match-note").textContent = `Levels matched: original ${orig.toFixed(1)} LUFS, master ${mast.toFixed(1)} LUFS; ` +
      `the louder one plays ${Math.abs(diff).toFixed(1)} dB quieter.`;
  }
  player.volume = Math.min(1, Math.pow(10, gainDb / 20));
  const resume = () => {
    try { player.currentTime = Math.min(t, player.duration || t); } catch (e) { /* not seekable yet */ }
    if (wasPlaying) player.play().catch(() => {});
  };
  if (player.readyState >= 1) resume(); else player.addEventListener("loadedmetadata", resume, { once: true });
  $("ab-original").setAttribute("aria-pressed", String(which === "original"));
  $("ab-master").setAttribute("aria-pressed", String(which === "master"));
}

// ------------------------------------------------------------------ feedback

function updatePreference() {
  const box = $("prefer");
  if (state.renders.length < 2) { box.hidden = true; return; }
  const [a, b] = state.renders.slice(-2);
  $("prefer-a").textContent = `Master ${a.n}`;
  $("prefer-b").textContent = `Master ${b.n}`;
  $("prefer-a").onclick = () => sendFeedback({ kind: "preference", request_ids: [a.requestId, b.requestId],
    preferred: a.requestId, versions: [a.version, b.version] });
  $("prefer-b").onclick = () => sendFeedback({ kind: "preference", request_ids: [a.requestId, b.requestId],
    preferred: b.requestId, versions: [a.version, b.version] });
  box.hidden = false;
}

async function sendFeedback(body) {
  const status = $("feedback-status");
  const comment = $("comment").value.trim();
  if (comment) body.comment = comment;
  const resp = await fetch("/v1/feedback", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  if (!resp.ok) { setStatus(status, `Not sent: ${await errorText(resp)}`, true); return; }
  const stored = await resp.json();
  setStatus(status, `Thank you: feedback ${stored.id} stored (${body.kind}).`);
  document.body.dataset.feedbackId = String(stored.id);
}

// ------------------------------------------------------------------ wiring

window.addEventListener("DOMContentLoaded", async () => {
  await initSliders();
  $("file").addEventListener("change", async (ev) => {
    const file = ev.target.files[0];
    if (!file) return;
    if (state.originalUrl) URL.revokeObjectURL(state.originalUrl);
    state.file = file;
    state.originalUrl = URL.createObjectURL(file);
    state.renders = [];
    $("listen").hidden = true;
    $("feedback").hidden = true;
    await analyze(file);
  });
  $("master-btn").addEventListener("click", master);
  $("ab-original").addEventListener("click", () => listen("original"));
  $("ab-master").addEventListener("click", () => listen("master"));
  for (const b of document.querySelectorAll("#rate button")) {
    b.addEventListener("click", () => sendFeedback({ kind: "rating", request_ids: [state.current.requestId],
      rating: parseInt(b.dataset.rating, 10), versions: [state.current.version] }));
  }
  document.body.dataset.ready = "1";
});
