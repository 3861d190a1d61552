// The gateway's web console: plain DOM, no framework, no build step. Every datum comes from the HTTP API
// with the token typed at login (kept in sessionStorage: gone when the tab closes). Device-reported text
// (names, alarm descriptions) is untrusted and only ever set as textContent. Live updates come from
// /api/events read with fetch() (EventSource cannot send the Authorization header, and a token in a URL
// ends up in logs); without it the page polls.

const TOKEN_KEY = "gbgw.token";
const POLL_MS = 5000;
const PTZ_SPEED = 0x80;
// The catalog's PTZType (A.2.1): 1 dome, 2 half dome, 3 fixed, 4 remote-controlled fixed.
const PTZ_TYPES = { 1: "dome", 2: "half dome", 3: "fixed", 4: "remote-controlled" };

const $ = (id) => document.getElementById(id);
const state = { devices: [], device: null, channels: [], channel: null, viewer: null, records: [], range: null,
  events: false };

class Unauthorized extends Error {}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) throw new Unauthorized((await response.json()).error);
  return response;
}

async function json(path, options) {
  const response = await api(path, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `${response.status}`);
  return body;
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

// -- login ------------------------------------------------------------------------------------------

function showLogin(message = "") {
  $("console").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("token").focus();
}

async function start() {
  try {
    await loadDevices();
  } catch (error) {
    if (error instanceof Unauthorized) return showLogin(error.message);
    throw error;
  }
  $("login").hidden = true;
  $("console").hidden = false;
  loadAlarms();
  loadPanels();
  if (!state.events) followEvents();
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  start();
});

$("logout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  stopPreview();
  showLogin();
});

// -- devices, grouped by civil code, then industry (ID digits 1-8 and 9-10) -----------------------------

async function loadDevices() {
  state.devices = await json("/api/devices");
  const online = state.devices.filter((d) => d.online).length;
  $("summary").textContent = `${state.devices.length} devices, ${online} online`;
  renderTree();
}

function renderTree() {
  const groups = new Map();
  for (const device of state.devices) {
    const info = device.id_info || { civil_code: "?", industry: "?", industry_name: "unknown" };
    const civil = groups.get(info.civil_code) || new Map();
    groups.set(info.civil_code, civil);
    const industry = `${info.industry} ${info.industry_name}`;
    civil.set(industry, [...(civil.get(industry) || []), device]);
  }
  const tree = [...groups].sort().map(([civil, industries]) =>
    element("details", { open: "" }, element("summary", {}, `Civil code ${civil}`),
      ...[...industries].sort().map(([industry, devices]) =>
        element("details", { open: "" }, element("summary", {}, industry), ...devices.map(deviceButton)))));
  $("tree").replaceChildren(...tree);
}

function deviceButton(device) {
  const current = state.device && state.device.id === device.id;
  return element("button", { class: "device", type: "button", "aria-current": String(Boolean(current)),
    title: device.id, "data-device": device.id, onclick: () => selectDevice(device) },
  element("span", { class: device.online ? "dot on" : "dot" }), device.name || device.id,
  element("small", {}, ` ${device.online ? "online" : "offline"}`));
}

async function selectDevice(device) {
  state.device = device;
  renderTree();
  state.channels = await json(`/api/devices/${device.id}/channels`);
  renderChannels();
}

// -- channels ---------------------------------------------------------------------------------------------

function renderChannels() {
  const wanted = $("search").value.trim().toLowerCase();
  const shown = state.channels.filter((c) => !wanted || c.id.includes(wanted)
    || (c.name || "").toLowerCase().includes(wanted));
  $("channel-list").replaceChildren(...shown.map((channel) => element("li", {},
    element("button", { type: "button", "data-channel": channel.id, "aria-current": String(state.channel === channel),
      onclick: () => preview(channel) },
    element("span", { class: channel.status === "ON" ? "dot on" : "dot" }), channel.name || channel.id,
    element("small", {}, channel.id)))));
}

$("search").addEventListener("input", renderChannels);

// -- preview over WHEP (RFC 9725): offer recvonly, POST it once ICE gathering is complete ------------------

function gathered(pc) {
  // The gateway takes no trickled candidates: the offer must carry them all. Capped, since a host with
  // an unreachable STUN server would otherwise wait for its timeout.
  return new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    const done = () => pc.iceGatheringState === "complete" && resolve();
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 2000);
  });
}

async function stopPreview() {
  const viewer = state.viewer;
  state.viewer = null;
  if (!viewer) return;
  viewer.pc.close();
  $("video").srcObject = null;
  if (viewer.location) await api(viewer.location, { method: "DELETE" }).catch(() => {});
}

function preview(channel) {
  state.channel = channel;
  renderChannels();
  loadPresets(channel);
  return watch(channel, null);
}

// ``range``: {start, end} Date objects of a recording to play back; null: live.
async function watch(channel, range) {
  await stopPreview();
  const video = $("video");
  const clicked = performance.now();
  video.dataset.firstFrameMs = "";
  const status = $("preview-status");
  const ptzType = PTZ_TYPES[channel.ptz_type];
  status.textContent = `${channel.name || channel.id}: connecting…`;
  $("ptz").title = ptzType ? `the catalog says: ${ptzType} camera` : "";
  const pc = new RTCPeerConnection({ iceServers: [] });
  const viewer = { pc, location: null, channel, playback: null, range };
  state.viewer = viewer;
  pc.addTransceiver("video", { direction: "recvonly" });
  // G.711 from the camera, when it sends any; starts muted so autoplay is allowed (the controls unmute).
  pc.addTransceiver("audio", { direction: "recvonly" });
  const media = new MediaStream();
  video.muted = true;
  video.srcObject = media;
  pc.addEventListener("track", (event) => {
    media.addTrack(event.track);
    video.play().catch(() => {});
  });
  video.requestVideoFrameCallback(() => {
    if (state.viewer !== viewer) return;
    const ms = Math.round(performance.now() - clicked);
    video.dataset.firstFrameMs = String(ms);
    status.textContent = `${channel.name || channel.id}: ${range ? "playback" : "live"} (first frame after ${ms} ms)`;
  });
  pc.addEventListener("connectionstatechange", () => {
    if (state.viewer === viewer && ["failed", "closed"].includes(pc.connectionState)) {
      status.textContent = `${channel.name || channel.id}: connection ${pc.connectionState}`;
    }
  });
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const query = range ? `?start=${encodeURIComponent(iso(range.start))}&end=${encodeURIComponent(iso(range.end))}` : "";
  const whep = `/api/devices/${channel.device_id}/channels/${channel.id}/whep${query}`;
  const response = await api(whep, { method: "POST", headers: { "Content-Type": "application/sdp" },
    body: pc.localDescription.sdp });
  if (response.status !== 201) {
    const body = await response.json().catch(() => ({}));
    status.textContent = `${channel.name || channel.id}: cannot preview: ${body.error || response.status}`;
    if (state.viewer === viewer) state.viewer = null;
    pc.close();
    return;
  }
  viewer.location = response.headers.get("Location");
  viewer.playback = response.headers.get("X-Playback-Session");
  if (state.viewer !== viewer) {
    await api(viewer.location, { method: "DELETE" }).catch(() => {});
    return;
  }
  await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
  if (viewer.playback) followPosition(viewer);
}

// -- playback: a timeline of the recordings found (RecordInfo), click to play from there, click to seek ------

function iso(date) {
  // The local time with its offset, as the API wants it (2025-04-22T10:00:00+08:00).
  const pad = (n) => String(Math.trunc(Math.abs(n))).padStart(2, "0");
  const offset = -date.getTimezoneOffset();
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:`
    + `${pad(date.getMinutes())}:${pad(date.getSeconds())}${offset >= 0 ? "+" : "-"}${pad(offset / 60)}:${pad(offset % 60)}`;
}

function localInput(date) {
  return iso(date).slice(0, 19);
}

async function searchRecords() {
  const channel = state.channel;
  if (!channel) return;
  const start = new Date($("pb-start").value), end = new Date($("pb-end").value);
  state.range = { start, end };
  const query = `start=${encodeURIComponent(iso(start))}&end=${encodeURIComponent(iso(end))}`;
  const found = await json(`/api/devices/${channel.device_id}/channels/${channel.id}/records?${query}`)
    .catch((error) => ({ records: [], error: error.message }));
  state.records = found.records.filter((r) => r.start && r.end)
    .map((r) => ({ start: new Date(r.start), end: new Date(r.end) }));
  const span = end - start;
  $("timeline").replaceChildren(...state.records.map((r, index) => {
    const bar = element("div", { class: "record", "data-record": String(index),
      title: `${r.start.toLocaleString()} – ${r.end.toLocaleString()}` });
    // Through the CSSOM: the Content-Security-Policy refuses style attributes.
    bar.style.left = `${(100 * (r.start - start)) / span}%`;
    bar.style.width = `${(100 * (r.end - r.start)) / span}%`;
    return bar;
  }), element("div", { class: "cursor", id: "pb-cursor", hidden: "" }));
  $("pb-position").textContent = found.error || `${state.records.length} recordings`;
}

async function clickTimeline(event) {
  const { range, channel, viewer } = state;
  if (!range || !channel) return;
  const box = $("timeline").getBoundingClientRect();
  const at = new Date(range.start.getTime() + ((event.clientX - box.left) / box.width) * (range.end - range.start));
  if (viewer && viewer.playback && at >= viewer.range.start && at < viewer.range.end) {
    return control(viewer, { action: "seek", position: (at - viewer.range.start) / 1000 });
  }
  const record = state.records.find((r) => at >= r.start && at < r.end);
  if (record) await watch(channel, { start: new Date(Math.floor(at / 1000) * 1000), end: record.end });
}

async function control(viewer, body) {
  const response = await api(`/api/sessions/${viewer.playback}/control`, { method: "POST",
    headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const answer = await response.json();
  if (!response.ok) $("pb-position").textContent = `${body.action}: ${answer.error}`;
  else showPosition(viewer, answer);
}

function showPosition(viewer, session) {
  const at = new Date(viewer.range.start.getTime() + session.position * 1000);
  $("pb-position").textContent = `${at.toLocaleTimeString()} ×${session.scale}${session.paused ? " paused" : ""}`
    + (session.state === "ended" ? ` ended: ${session.reason}` : "");
  $("pb-position").dataset.position = String(session.position);
  $("pb-pause").textContent = session.paused ? "Resume" : "Pause";
  const cursor = $("pb-cursor"), range = state.range;
  if (cursor && range) {
    cursor.hidden = false;
    cursor.style.left = `${(100 * (at - range.start)) / (range.end - range.start)}%`;
  }
}

async function followPosition(viewer) {
  while (state.viewer === viewer) {
    const session = await json(`/api/sessions/${viewer.playback}`).catch(() => null);
    if (session && state.viewer === viewer) showPosition(viewer, session);
    if (!session || session.state === "ended") return;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

$("pb-search").addEventListener("click", searchRecords);
$("timeline").addEventListener("click", clickTimeline);
$("pb-pause").addEventListener("click", () => {
  const viewer = state.viewer;
  if (viewer && viewer.playback) control(viewer, { action: $("pb-pause").textContent === "Pause" ? "pause" : "resume" });
});
$("pb-speed").addEventListener("change", () => {
  const viewer = state.viewer;
  if (viewer && viewer.playback) control(viewer, { action: "scale", scale: Number($("pb-speed").value) });
});
$("pb-end").value = localInput(new Date());
$("pb-start").value = localInput(new Date(Date.now() - 3600 * 1000));

// -- PTZ: move while the button is held, stop on release ------------------------------------------------

async function ptz(command) {
  const channel = state.channel;
  if (!channel) return;
  const path = `/api/devices/${channel.device_id}/channels/${channel.id}/ptz`;
  const response = await api(path, { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ command, speed: PTZ_SPEED }) });
  if (!response.ok) $("preview-status").textContent = `PTZ ${command}: ${(await response.json()).error}`;
}

for (const button of document.querySelectorAll("#ptz button")) {
  button.addEventListener("pointerdown", () => ptz(button.dataset.ptz));
  button.addEventListener("pointerup", () => ptz("stop"));
}

// -- presets of a PTZ channel (PresetQuery), call one or set the current position ---------------------------

async function loadPresets(channel) {
  $("presets").hidden = !channel.ptz_type || channel.ptz_type === 3;
  if ($("presets").hidden) return;
  const base = `/api/devices/${channel.device_id}/channels/${channel.id}/presets`;
  const found = await json(base).catch(() => ({ presets: [] }));
  if (state.channel !== channel) return;
  $("preset-list").replaceChildren(...found.presets.map((p) => element("li", {}, element("button", {
    type: "button", "data-preset": p.id, onclick: () => preset(channel, p.id, "call") }, `${p.id} ${p.name || ""}`))));
}

async function preset(channel, index, action) {
  const response = await api(`/api/devices/${channel.device_id}/channels/${channel.id}/presets/${index}`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ action }) });
  if (!response.ok) $("preview-status").textContent = `preset ${action}: ${(await response.json()).error}`;
  else if (action === "set") loadPresets(channel);
}

$("preset-set").addEventListener("click", () => state.channel && preset(state.channel, $("preset-index").value, "set"));

// -- upstreams and what they are shared; sessions with loss and bitrate -------------------------------------

async function loadPanels() {
  const [upstreams, sessions, viewers] = await Promise.all(["/api/upstreams", "/api/sessions",
    "/api/webrtc/viewers"].map((path) => json(path).catch(() => [])));
  $("upstream-list").replaceChildren(...(upstreams.length ? upstreams.map((u) => element("li", {},
    element("span", { class: u.online ? "dot on" : "dot" }), `${u.name} ${u.id}`,
    element("small", {}, `${u.shared_channels} channels shared, ${u.sessions} streams${u.reason ? `, ${u.reason}` : ""}`)))
    : [element("li", {}, "No upstreams.")]));
  const kbps = (bytes, seconds) => (seconds > 0 ? Math.round((bytes * 8) / seconds / 1000) : 0);
  $("session-list").replaceChildren(...sessions.map((s) => element("li", { "data-session": s.id },
    `${s.channel_id} → ${s.receiver || s.owner}`, element("small", {}, `${s.state}, ${kbps(s.bytes_out, s.age)} kbit/s, `
      + `lost ${s.device.lost} of ${s.device.packets_in}`))),
  ...viewers.map((v) => element("li", { "data-viewer": v.id }, `${v.channel} → WebRTC${v.playback ? " playback" : ""}`,
    element("small", {}, `${v.state}, ${Math.round(v.bitrate_kbps)} kbit/s, ${v.frames_dropped} frames dropped`))));
}

// Server-Sent Events over fetch(): the token goes in the header. Read until the gateway closes it; then, or
// when it cannot be read, poll.
async function followEvents() {
  state.events = true;
  try {
    const response = await api("/api/events", { headers: { Accept: "text/event-stream" } });
    if (!response.ok || !response.body) throw new Error(`${response.status}`);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const type = buffer.slice(0, end).split("\n").find((line) => line.startsWith("event: "));
        buffer = buffer.slice(end + 2);
        if (type) onEvent(type.slice(7));
      }
    }
  } catch (error) {
    if (error instanceof Unauthorized) return showLogin(error.message);
  } finally {
    state.events = false;
  }
  setTimeout(() => !$("console").hidden && followEvents(), POLL_MS);
}

function onEvent(type) {
  document.body.dataset.lastEvent = type;
  if (type.startsWith("device.") || type === "catalog.changed") loadDevices().catch(() => {});
  if (type === "alarm") loadAlarms().catch(() => {});
  if (type.startsWith("session.")) loadPanels().catch(() => {});
}

// -- alarms -----------------------------------------------------------------------------------------------

async function loadAlarms() {
  const alarms = await json("/api/alarms?limit=50");
  if (!alarms.length) return $("alarm-list").replaceChildren(element("li", {}, "No alarms."));
  $("alarm-list").replaceChildren(...alarms.map((alarm) => element("li", {},
    `${alarm.time || alarm.received_at} ${alarm.device_id} priority ${alarm.priority ?? "?"}`,
    element("small", {}, alarm.description || ""))));
}

setInterval(() => {
  if ($("console").hidden) return;
  // Bitrates move without an event.
  loadPanels().catch(() => {});
  if (state.events) return;
  loadDevices().catch(() => {});
  loadAlarms().catch(() => {});
}, POLL_MS);

start();
