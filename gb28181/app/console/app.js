// The gateway's web console: plain DOM, no framework, no build step. Every datum comes from the HTTP API
// with the token typed at login (kept in sessionStorage: gone when the tab closes). Device-reported text
// (names, alarm descriptions) is untrusted and only ever set as textContent.

const TOKEN_KEY = "gbgw.token";
const REFRESH_MS = 10000;
const PTZ_SPEED = 0x80;
// The catalog's PTZType (A.2.1): 1 dome, 2 half dome, 3 fixed, 4 remote-controlled fixed.
const PTZ_TYPES = { 1: "dome", 2: "half dome", 3: "fixed", 4: "remote-controlled" };

const $ = (id) => document.getElementById(id);
const state = { devices: [], device: null, channels: [], channel: null, viewer: null };

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

async function preview(channel) {
  await stopPreview();
  state.channel = channel;
  renderChannels();
  const video = $("video");
  const clicked = performance.now();
  video.dataset.firstFrameMs = "";
  const status = $("preview-status");
  const ptzType = PTZ_TYPES[channel.ptz_type];
  status.textContent = `${channel.name || channel.id}: connecting…`;
  $("ptz").title = ptzType ? `the catalog says: ${ptzType} camera` : "";
  const pc = new RTCPeerConnection({ iceServers: [] });
  const viewer = { pc, location: null, channel };
  state.viewer = viewer;
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addEventListener("track", (event) => {
    video.srcObject = event.streams[0] || new MediaStream([event.track]);
    video.play().catch(() => {});
  });
  video.requestVideoFrameCallback(() => {
    if (state.viewer !== viewer) return;
    const ms = Math.round(performance.now() - clicked);
    video.dataset.firstFrameMs = String(ms);
    status.textContent = `${channel.name || channel.id}: live (first frame after ${ms} ms)`;
  });
  pc.addEventListener("connectionstatechange", () => {
    if (state.viewer === viewer && ["failed", "closed"].includes(pc.connectionState)) {
      status.textContent = `${channel.name || channel.id}: connection ${pc.connectionState}`;
    }
  });
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const whep = `/api/devices/${channel.device_id}/channels/${channel.id}/whep`;
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
  if (state.viewer !== viewer) {
    await api(viewer.location, { method: "DELETE" }).catch(() => {});
    return;
  }
  await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
}

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
  loadDevices().catch(() => {});
  loadAlarms().catch(() => {});
}, REFRESH_MS);

start();
