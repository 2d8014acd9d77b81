// The reference web client of messaging_app: plain JavaScript, one native ES module, no build step.
// It uses only the public API, as any third-party client would: REST under /api/ with a JWT
// (refresh tokens rotate) and the event stream at /ws/ (docs/websocket.md).
//
// State lives in memory; the tokens and the outbox (sends not yet acknowledged) are kept in
// sessionStorage, so a reload of the tab loses nothing and a closed tab forgets the login.
"use strict";

const PAGE = 30;                 // messages per timeline page
const TYPING_SHOWN_MS = 5000;    // how long "X is typing" stays without a new typing frame
const TYPING_EVERY_MS = 3000;    // the server accepts one typing frame per conversation every 3 s
const PING_EVERY_MS = 25000;

const $ = (id) => document.getElementById(id);
const store = window.sessionStorage;

const state = {
  access: null, refresh: null, me: null,
  conversations: new Map(),      // conversation_id -> conversation (REST shape)
  timelines: new Map(),          // conversation_id -> {byId: Map, hasOlder, loaded}
  current: null,                 // open conversation_id
  removed: new Set(),            // conversations we were removed from while open
  lastEventId: null,
  outbox: [],                    // [{client_id, conversation, message_body, parent_message, attachments, sent_at, error?}]
  uploads: [],                   // composer: [{key, file, progress, attachment?, error?}] (uploaded before a send is queued)
  presence: new Map(),           // user_id -> {online, last_seen_at}, from `presence` frames
  presenceKey: null,             // the user_ids last subscribed to, joined
  typing: new Map(),             // conversation_id -> Map(user_id -> {name, until})
  replyTo: null, editing: null,  // message objects
  lastTypingSent: new Map(),
  memberships: new Map(),        // conversation_id -> {muted, archived, archived_at, notifications}: yours
  showArchived: false,           // the list shows the archived conversations instead of the inbox
};

// ---------------------------------------------------------------- helpers
function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}
const fullName = (u) => (u ? `${u.first_name} ${u.last_name}`.trim() || "Someone" : "Someone");
const timeOf = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
function announce(text) {
  const s = $("status");
  s.textContent = text;
  clearTimeout(announce.timer);
  announce.timer = setTimeout(() => { s.textContent = ""; }, 4000);
}
function errorText(body, fallback) {
  const errs = body && body.errors;
  if (Array.isArray(errs) && errs.length) return errs.map((e) => (e.attr ? `${e.attr}: ${e.detail}` : e.detail)).join(" ");
  return fallback;
}
function jwtExp(token) {
  try { return JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))).exp * 1000; } catch { return 0; }
}

// A message as one line of text: its body, then its files' names (plain text, no emoji: not every
// system font has a paperclip).
function textOf(m) {
  const files = (m.attachments || []).map((a) => a.file_name).join(", ");
  return `${m.message_body || ""}${m.message_body && files ? " " : ""}${files ? `[${files}]` : ""}`;
}
function sizeText(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(n < 10240 ? 1 : 0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

// ---------------------------------------------------------------- REST with JWT refresh
class ApiError extends Error {
  constructor(status, body) { super(errorText(body, `HTTP ${status}`)); this.status = status; this.body = body; }
}
class NetworkError extends Error {}

function saveTokens() {
  if (state.refresh) store.setItem("webclient.tokens", JSON.stringify({ access: state.access, refresh: state.refresh }));
  else store.removeItem("webclient.tokens");
}
let refreshing = null;
function refreshTokens() {
  // One refresh at a time: the refresh token rotates, so a second concurrent refresh would be refused.
  if (!refreshing) {
    refreshing = (async () => {
      let res;
      try {
        res = await fetch("/api/token/refresh/", {
          method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" },
          body: JSON.stringify({ refresh: state.refresh }),
        });
      } catch { throw new NetworkError("offline"); }
      if (!res.ok) { logout(false, "Your session has ended: please log in again."); throw new ApiError(res.status, null); }
      const body = await res.json();
      state.access = body.access; state.refresh = body.refresh || state.refresh;
      saveTokens();
    })().finally(() => { refreshing = null; });
  }
  return refreshing;
}
async function freshAccess() {
  if (!state.access || jwtExp(state.access) - Date.now() < 30000) await refreshTokens();
  return state.access;
}
async function api(method, path, body, { auth = true, retried = false } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (auth) headers.Authorization = `Bearer ${await freshAccess()}`;
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new NetworkError("offline");
  }
  if (res.status === 401 && auth && !retried) {
    await refreshTokens();
    return api(method, path, body, { auth, retried: true });
  }
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  if (res.status >= 500) throw new NetworkError(`server ${res.status}`);
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

// Attachment URLs need the Authorization header, which <img src> cannot send: fetch them as blobs
// and show object URLs (allowed by the /app/ page's `img-src blob:`), revoked once off the page.
async function fetchBlob(path, retried = false) {
  let res;
  try {
    res = await fetch(path, { headers: { Authorization: `Bearer ${await freshAccess()}` } });
  } catch { throw new NetworkError("offline"); }
  if (res.status === 401 && !retried) { await refreshTokens(); return fetchBlob(path, true); }
  if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => null));
  return res.blob();
}
function revokeBlobsIn(node) {
  if (node.nodeType !== 1) return;
  for (const img of [node, ...node.querySelectorAll("img")]) {
    if (img.tagName === "IMG" && img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  }
}
// Messages leave the DOM in many ways (re-render, another conversation, log out): revoke their
// thumbnails' object URLs then. A node only moved within the list is still connected: kept.
new MutationObserver((records) => {
  for (const r of records) for (const node of r.removedNodes) if (!node.isConnected) revokeBlobsIn(node);
}).observe(document.getElementById("message-list"), { childList: true });

// One upload with XMLHttpRequest (fetch cannot report upload progress); resolves to the attachment.
function uploadOnce(item, token, onProgress) {
  const { file } = item;
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    item.xhr = xhr; // removing the file from the composer aborts its upload
    xhr.onabort = () => reject(new NetworkError("aborted"));
    xhr.open("POST", "/api/attachments/");
    xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.onerror = () => reject(new NetworkError("offline"));
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status === 201) resolve(body);
      else if (xhr.status >= 500) reject(new NetworkError(`server ${xhr.status}`));
      else reject(new ApiError(xhr.status, body));
    };
    const form = new FormData();
    form.append("file", file, file.name || "pasted-image.png");
    xhr.send(form);
  });
}
function uploadErrorText(err) {
  const code = err.body && Array.isArray(err.body.errors) && err.body.errors[0] && err.body.errors[0].code;
  if (err instanceof NetworkError) return "the server cannot be reached";
  if (err.status === 413 || code === "file_too_large" || code === "request_too_large") return "the file is too large";
  return {
    unsupported_type: "this type of file is not allowed", quota_exceeded: "your storage quota is full",
    image_too_large: "the image is too large", invalid_image: "the image is damaged", empty: "the file is empty",
  }[code] || err.message;
}
// One upload at a time, in the order chosen: the server lists a message's attachments in upload
// order, and a big file does not hold several bodies in the server's memory at once.
let uploadChain = Promise.resolve();
function uploadFiles(files) {
  for (const file of files) {
    const item = { key: uuid(), file, progress: 0, attachment: null, error: null, retryable: false };
    state.uploads.push(item);
    queueUpload(item);
  }
  renderUploads();
}
function queueUpload(item) {
  const name = item.file.name || "image";
  // Progress moves the bar in place: re-rendering the list would take the focus off its buttons.
  const onProgress = (p) => {
    item.progress = p;
    const bar = $("upload-list").querySelector(`[data-key="${item.key}"] progress`);
    if (bar) bar.value = Math.round(p * 100);
  };
  uploadChain = uploadChain.then(async () => {
    if (!state.uploads.includes(item)) return; // removed before its turn
    announce(`Uploading ${name}…`);
    try {
      try {
        item.attachment = await uploadOnce(item, await freshAccess(), onProgress);
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 401)) throw err;
        await refreshTokens();
        item.attachment = await uploadOnce(item, state.access, onProgress);
      }
      announce(`${item.attachment.file_name} uploaded`);
    } catch (err) {
      if (!state.uploads.includes(item)) return; // removed (and aborted) meanwhile
      item.error = uploadErrorText(err);
      item.retryable = err instanceof NetworkError;
      announce(`Could not upload ${name}: ${item.error}`);
    }
    renderUploads();
  });
}
function retryUpload(key) {
  const item = state.uploads.find((u) => u.key === key);
  if (!item) return;
  Object.assign(item, { error: null, retryable: false, progress: 0 });
  renderUploads();
  queueUpload(item);
  $("composer-input").focus();
}
function removeUpload(key) {
  const item = state.uploads.find((u) => u.key === key);
  if (item && item.xhr && !item.attachment) item.xhr.abort();
  state.uploads = state.uploads.filter((u) => u.key !== key);
  renderUploads();
  $("composer-input").focus();
}
function renderUploads() {
  const list = $("upload-list");
  list.hidden = state.uploads.length === 0;
  list.replaceChildren(...state.uploads.map((u) => {
    const name = u.file.name || "pasted image";
    const li = el("li", { class: `upload${u.error ? " failed" : ""}`, "data-key": u.key },
      el("span", { class: "upload-name", text: `${name} (${sizeText(u.file.size)})` }));
    if (u.error) li.append(el("span", { class: "upload-error", text: `Not uploaded: ${u.error}` }));
    else if (!u.attachment) li.append(el("progress", { max: "100", value: String(Math.round(u.progress * 100)), "aria-label": `Uploading ${name}` }));
    else li.append(el("span", { class: "upload-done", text: "Ready" }));
    if (u.retryable) li.append(el("button", { type: "button", class: "link", "aria-label": `Retry ${name}`, text: "Retry", onclick: () => retryUpload(u.key) }));
    li.append(el("button", { type: "button", class: "link", "aria-label": `Remove ${name}`, text: "Remove", onclick: () => removeUpload(u.key) }));
    return li;
  }));
}
function attachmentsNode(m) {
  const list = el("ul", { class: "attachments", "aria-label": "Attachments" });
  for (const a of m.attachments) {
    const size = sizeText(a.size);
    if (a.thumbnail_url && m.message_id) {
      // Its size is known before it loads: no distortion, and the timeline does not jump.
      const scale = Math.min(1, 160 / (a.width || 160), 160 / (a.height || 160));
      const img = el("img", {
        alt: a.file_name, width: String(Math.round((a.width || 160) * scale)), height: String(Math.round((a.height || 160) * scale)),
      });
      // Set only while on the page: the observer below the helpers revokes it when it leaves.
      fetchBlob(a.thumbnail_url).then((blob) => { if (img.isConnected) img.src = URL.createObjectURL(blob); })
        .catch(() => { img.alt = `${a.file_name} (not available)`; });
      list.append(el("li", {}, el("button", {
        type: "button", class: "thumb", "aria-label": `Open image ${a.file_name} (${size})`, onclick: () => openImage(a),
      }, img)));
    } else if (m.message_id) {
      list.append(el("li", {}, el("button", {
        type: "button", class: "file", "aria-label": `Download ${a.file_name} (${size})`, onclick: () => downloadAttachment(a),
      }, el("span", { class: "file-name", text: a.file_name }), el("span", { class: "file-size", text: size }))));
    } else {
      list.append(el("li", { class: "file", text: `${a.file_name} (${size})` }));
    }
  }
  return list;
}
function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
async function downloadAttachment(a) {
  try { saveBlob(await fetchBlob(a.download_url), a.file_name); } catch (err) { announce(`Could not download ${a.file_name}: ${err.message}`); }
}
async function openImage(a) {
  const dialog = $("image-dialog");
  const img = $("image-full");
  $("image-dialog-title").textContent = a.file_name;
  img.alt = a.file_name;
  try {
    const blob = await fetchBlob(a.download_url);
    if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(blob);
    $("image-download").onclick = () => saveBlob(blob, a.file_name);
    if (!dialog.open) dialog.showModal();
  } catch (err) { announce(`Could not open ${a.file_name}: ${err.message}`); }
}
function closeImage() {
  const img = $("image-full");
  $("image-dialog").close();
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  img.removeAttribute("src");
}

// ---------------------------------------------------------------- log in, register, log out
async function login(email, password) {
  const res = await fetch("/api/token/", {
    method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ email, password }),
  });
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(res.status, body);
  state.access = body.access; state.refresh = body.refresh;
  saveTokens();
  await start();
}
async function register(form) {
  const data = Object.fromEntries(new FormData(form));
  await api("POST", "/api/users/", data, { auth: false });
  await login(data.email, data.password);
}
function logout(tellServer = true, message = "") {
  if (tellServer && state.refresh) {
    fetch("/api/token/blacklist/", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ refresh: state.refresh }),
    }).catch(() => {});
  }
  socket.stop();
  Object.assign(state, { access: null, refresh: null, me: null, current: null, lastEventId: null, outbox: [], uploads: [] });
  state.presence.clear(); state.presenceKey = null;
  renderUploads();
  // Nothing of the session stays in the page (its thumbnails' object URLs are revoked as they go).
  $("message-list").replaceChildren(); $("conversation-list").replaceChildren();
  if ($("image-dialog").open) $("image-dialog").close();
  state.conversations.clear(); state.timelines.clear(); state.removed.clear();
  store.clear();
  $("chat-view").hidden = true;
  $("auth-view").hidden = false;
  $("login-error").textContent = message;
  document.title = "messaging_app – log in";
}

// ---------------------------------------------------------------- loading state over REST
async function loadInbox() {
  state.conversations.clear();
  let url = `/api/conversations/?page_size=100${state.showArchived ? "&archived=true" : ""}`;
  while (url) {
    const page = await api("GET", url);
    for (const c of page.results) state.conversations.set(c.conversation_id, c);
    url = page.next ? new URL(page.next).pathname + new URL(page.next).search : null;
    if (state.conversations.size >= 500) break;
  }
  renderInbox();
}
function timeline(id) {
  if (!state.timelines.has(id)) state.timelines.set(id, { byId: new Map(), hasOlder: true, loaded: false });
  return state.timelines.get(id);
}
function oldestFirst(t) {
  return [...t.byId.values()].sort((a, b) => (a.sent_at < b.sent_at ? -1 : a.sent_at > b.sent_at ? 1 : 0));
}
async function loadTimeline(id, { older = false } = {}) {
  const t = timeline(id);
  let url = `/api/conversations/${id}/messages/?page_size=${PAGE}`;
  if (older) {
    const first = oldestFirst(t)[0];
    if (first) url += `&before=${first.message_id}`;
  }
  const page = await api("GET", url);
  for (const m of page.results) t.byId.set(m.message_id, m);
  t.hasOlder = Boolean(page.next);
  t.loaded = true;
}

async function start() {
  $("auth-view").hidden = true;
  $("chat-view").hidden = false;
  document.title = "messaging_app – chat";
  state.outbox = JSON.parse(store.getItem("webclient.outbox") || "[]");
  try {
    state.me = await api("GET", "/api/users/me/");
    // Where the event stream stands, before loading state: nothing after it can be missed.
    if (state.lastEventId === null) state.lastEventId = (await api("GET", "/api/events/")).last_event_id;
    $("me-name").textContent = fullName(state.me);
    await loadInbox();
    const wanted = store.getItem("webclient.current");
    if (wanted && state.conversations.has(wanted)) await openConversation(wanted, { focus: false });
    else renderConversation();
  } catch (err) {
    if (err instanceof NetworkError) { announce("The server cannot be reached; retrying…"); setTimeout(() => state.refresh && start(), 3000); return; }
    if (!state.refresh) return; // logged out meanwhile
    throw err;
  }
  socket.start();
  flushOutbox();
}

// ---------------------------------------------------------------- the event stream
const socket = {
  ws: null, wanted: false, attempt: 0, timer: null, pinger: null, live: false,
  start() { this.wanted = true; if (!this.ws) this.connect(); },
  stop() {
    this.wanted = false; clearTimeout(this.timer); clearInterval(this.pinger);
    if (this.ws) { this.ws.onclose = null; this.ws.close(); this.ws = null; }
    setConnection("offline");
  },
  connect() {
    clearTimeout(this.timer);
    if (!this.wanted) return;
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/`);
    this.ws = ws;
    setConnection("connecting");
    ws.onopen = async () => {
      try { ws.send(JSON.stringify({ type: "auth", token: await freshAccess() })); } catch { ws.close(); }
    };
    ws.onmessage = (e) => { let f; try { f = JSON.parse(e.data); } catch { return; } this.frame(f); };
    ws.onclose = (e) => {
      this.ws = null; clearInterval(this.pinger); setConnection("offline");
      if (!this.wanted) return;
      if (e.code === 4401) refreshTokens().catch(() => {});
      // Jittered exponential backoff: 1 s, 2 s, 4 s ... 30 s, plus up to a second.
      const delay = Math.min(30000, 1000 * 2 ** this.attempt) + Math.random() * 1000;
      this.attempt = Math.min(this.attempt + 1, 5);
      this.timer = setTimeout(() => this.connect(), e.code === 4409 ? 30000 : delay);
    };
  },
  send(frame) { if (this.ws && this.ws.readyState === WebSocket.OPEN && this.live) this.ws.send(JSON.stringify(frame)); },
  frame(f) {
    if (f.type === "auth.ok") {
      this.attempt = 0; this.live = true;
      this.ws.send(JSON.stringify({ type: "resume", since: state.lastEventId ?? f.last_event_id }));
      clearInterval(this.pinger);
      this.pinger = setInterval(() => this.send({ type: "ping" }), PING_EVERY_MS);
      setConnection("catching-up");
    } else if (f.type === "resumed") {
      setConnection("live");
      syncPresence(true);
      flushOutbox();
    } else if (f.type === "error" && f.code === "cursor_expired") {
      // Away longer than events are kept: reload over REST, then go on from where the stream stands.
      state.lastEventId = f.last_event_id;
      reloadEverything().then(() => { setConnection("live"); syncPresence(true); flushOutbox(); });
    } else if (f.type === "typing") {
      showTyping(f.conversation_id, f.user);
    } else if (f.type === "presence") {
      state.presence.set(f.user_id, { online: f.online, last_seen_at: f.last_seen_at });
      renderPresence();
    } else if (f.event_id !== undefined) {
      if (state.lastEventId !== null && f.event_id <= state.lastEventId) return; // already applied
      applyEvent(f);
      state.lastEventId = f.event_id;
    }
  },
};
function setConnection(s) {
  if (s === "offline" || s === "connecting") socket.live = false;
  if (s === "offline" && state.presence.size) {
    // Without a socket nothing says who comes or goes: show no presence rather than a stale one.
    state.presence.clear(); state.presenceKey = null;
    if (state.me) renderPresence();
  }
  const node = $("connection");
  node.dataset.state = s;
  node.textContent = { live: "Live", connecting: "Connecting…", "catching-up": "Catching up…", offline: "Offline" }[s];
}
async function reloadEverything() {
  try {
    await loadInbox();
    state.timelines.clear();
    if (state.current && state.conversations.has(state.current)) await openConversation(state.current, { focus: false });
    else { state.current = null; renderConversation(); }
  } catch (err) { console.warn("reload failed", err); }
}

function upsertConversation(c) {
  const known = state.conversations.get(c.conversation_id);
  state.conversations.set(c.conversation_id, known ? { ...known, ...c } : c);
}
function applyEvent(f) {
  const id = f.conversation_id;
  switch (f.type) {
    case "message.created": {
      const m = f.message;
      settleOutbox(m);
      const conv = state.conversations.get(id);
      const mine = state.memberships.get(id);
      if (m.sender.user_id !== state.me.user_id && mine && mine.archived && !mine.muted) {
        // The server unarchived it for us (a new message, not muted): back to the inbox.
        applyMembership(id, { ...mine, archived: false, archived_at: null });
      }
      if (!conv) { if (!state.showArchived) fetchConversation(id, { unlessArchived: true }); break; }
      // sent_at strictly increases within a conversation: a message not newer than the last one
      // known is already counted (state loaded over REST after the stream position was taken).
      if (!conv.last_message || conv.last_message.sent_at < m.sent_at) {
        conv.last_message = m; conv.last_activity_at = m.sent_at;
        conv.message_count = (conv.message_count || 0) + 1;
        if (m.sender.user_id !== state.me.user_id) {
          conv.unread_count = (conv.unread_count || 0) + 1;
          if ((m.mentions || []).includes(state.me.user_id)) conv.unread_mentions = (conv.unread_mentions || 0) + 1;
        }
      }
      const t = state.timelines.get(id);
      if (t && t.loaded) t.byId.set(m.message_id, m);
      clearTyping(id, m.sender.user_id);
      break;
    }
    case "message.updated":
    case "message.deleted": {
      const m = f.message;
      const t = state.timelines.get(id);
      if (t && t.byId.has(m.message_id)) t.byId.set(m.message_id, m);
      const conv = state.conversations.get(id);
      if (conv && conv.last_message && conv.last_message.message_id === m.message_id) conv.last_message = m;
      if (f.type === "message.deleted" && conv && m.sender.user_id !== state.me.user_id && state.current !== id) {
        fetchConversation(id); // its unread count may have dropped
      }
      break;
    }
    case "conversation.created":
    case "conversation.updated":
      upsertConversation(f.conversation);
      if (state.removed.has(id)) { // added back: its timeline is loaded afresh
        state.removed.delete(id);
        state.timelines.delete(id);
        if (state.current === id) openConversation(id, { focus: false });
      }
      break;
    case "conversation.removed":
      // The open one stays on screen, frozen under a notice; nothing more comes for it.
      state.conversations.delete(id);
      if (state.current === id) state.removed.add(id);
      else state.timelines.delete(id);
      break;
    case "conversation.read": {
      const conv = state.conversations.get(id);
      if (conv) { conv.unread_count = f.unread_count; conv.unread_mentions = f.unread_mentions; }
      break;
    }
    case "membership.updated": {
      const { type, ...mine } = f;
      applyMembership(id, mine);
      break;
    }
    default:
      return;
  }
  renderInbox();
  if (id === state.current) { renderConversation(); markSeen(); }
}
async function fetchConversation(id, { unlessArchived = false } = {}) {
  try {
    const conversation = await api("GET", `/api/conversations/${id}/`);
    if (unlessArchived) {
      // Unknown here: new, or archived (and muted: a message did not bring it back).
      const mine = await api("GET", `/api/conversations/${id}/membership/`);
      state.memberships.set(id, mine);
      if (mine.archived) return;
    }
    upsertConversation(conversation);
    renderInbox();
  } catch { /* gone or offline */ }
}

// ---------------------------------------------------------------- presence
// Presence comes only for people we subscribe to: the others in the open conversation first, then
// those of the inbox's rows, newest first, at most 100; the list is resent whenever it changes.
function presenceWanted() {
  const ids = [];
  const add = (c) => {
    for (const p of (c ? c.participants : [])) {
      if (p.user_id !== state.me.user_id && !ids.includes(p.user_id) && ids.length < 100) ids.push(p.user_id);
    }
  };
  add(state.conversations.get(state.current));
  const convs = [...state.conversations.values()].sort((a, b) => (a.last_activity_at < b.last_activity_at ? 1 : -1));
  for (const c of convs) add(c);
  return ids;
}
function syncPresence(fresh = false) {
  if (!state.me || !socket.live) return;
  const ids = presenceWanted();
  const key = ids.slice().sort().join(",");
  if (fresh) state.presence.clear(); // a new socket's subscription answers for everyone visible
  else if (key === state.presenceKey) return;
  state.presenceKey = key;
  socket.send({ type: "presence.subscribe", user_ids: ids });
  if (fresh) renderPresence();
}
function presenceOf(userId) {
  const p = state.presence.get(userId);
  // Offline and never seen: nothing to show (also what someone who hides their presence looks like).
  return p && (p.online || p.last_seen_at) ? p : null;
}
function lastSeenText(iso) {
  const then = new Date(iso);
  const minutes = Math.floor((Date.now() - then) / 60000);
  if (minutes < 1) return "last seen just now";
  if (minutes < 60) return `last seen ${minutes} min ago`;
  const sameDay = then.toDateString() === new Date().toDateString();
  return sameDay ? `last seen today at ${timeOf(iso)}` : `last seen ${then.toLocaleDateString()} at ${timeOf(iso)}`;
}
// A dot before the name, and its text alternative after it ("Frank Fisher (online)").
function presenceDot(userId) {
  const p = presenceOf(userId);
  return p ? el("span", { class: `dot ${p.online ? "online" : "offline"}`, "aria-hidden": "true" }) : null;
}
function presenceLabel(userId) {
  const p = presenceOf(userId);
  return p ? el("span", { class: "visually-hidden", text: p.online ? " (online)" : " (offline)" }) : null;
}
function directPartner(c) {
  const others = c ? c.participants.filter((p) => p.user_id !== state.me.user_id) : [];
  return others.length === 1 ? others[0] : null;
}
function renderPresence() {
  renderInbox();
  renderPresenceHeader();
  if ($("members-dialog").open) renderMembers();
}
function renderPresenceHeader() {
  const conv = state.current && state.conversations.get(state.current);
  const node = $("conversation-presence");
  let text = "";
  if (conv) {
    const partner = directPartner(conv);
    if (partner) {
      const p = presenceOf(partner.user_id);
      text = p ? (p.online ? "Online" : lastSeenText(p.last_seen_at)) : "";
    } else {
      const online = conv.participants.filter((x) => x.user_id !== state.me.user_id && presenceOf(x.user_id)?.online).length;
      text = online ? `${online} online` : "";
    }
  }
  if (node.textContent !== text) node.textContent = text;
}

// ---------------------------------------------------------------- typing
function showTyping(id, user) {
  if (!state.typing.has(id)) state.typing.set(id, new Map());
  state.typing.get(id).set(user.user_id, { name: fullName(user), until: Date.now() + TYPING_SHOWN_MS });
  renderTyping();
  setTimeout(renderTyping, TYPING_SHOWN_MS + 50);
}
function clearTyping(id, userId) {
  const t = state.typing.get(id);
  if (t) t.delete(userId);
  renderTyping();
}
function renderTyping() {
  const t = state.typing.get(state.current);
  const names = t ? [...t.values()].filter((x) => x.until > Date.now()).map((x) => x.name) : [];
  const text = names.length === 0 ? "" : names.length === 1 ? `${names[0]} is typing…` : `${names.join(", ")} are typing…`;
  if ($("typing").textContent !== text) $("typing").textContent = text;
}
function sendTyping() {
  const id = state.current;
  if (!id || Date.now() - (state.lastTypingSent.get(id) || 0) < TYPING_EVERY_MS) return;
  state.lastTypingSent.set(id, Date.now());
  socket.send({ type: "typing", conversation_id: id });
}

// ---------------------------------------------------------------- sending: optimistic, idempotent retries
function saveOutbox() { store.setItem("webclient.outbox", JSON.stringify(state.outbox)); }
function queueSend(conversation, body, parent, attachments = []) {
  state.outbox.push({
    client_id: uuid(), conversation, message_body: body, parent_message: parent ? parent.message_id : null,
    attachments, sent_at: new Date().toISOString(),
  });
  saveOutbox();
  renderConversation({ stickToBottom: true });
  flushOutbox();
}
function settleOutbox(m) {
  if (m.sender.user_id !== state.me.user_id || !m.client_id) return;
  const before = state.outbox.length;
  state.outbox = state.outbox.filter((o) => o.client_id !== m.client_id);
  if (state.outbox.length !== before) saveOutbox();
}
let flushing = false;
async function flushOutbox() {
  if (flushing || !state.refresh) return;
  flushing = true;
  try {
    for (const item of [...state.outbox]) {
      if (item.error) continue;
      try {
        // The same client_id on every retry: the server returns the original, never a second message.
        const m = await api("POST", `/api/conversations/${item.conversation}/messages/`, {
          message_body: item.message_body, client_id: item.client_id,
          ...(item.parent_message ? { parent_message: item.parent_message } : {}),
          ...(item.attachments && item.attachments.length ? { attachments: item.attachments.map((a) => a.attachment_id) } : {}),
        });
        settleOutbox(m);
        const t = state.timelines.get(m.conversation);
        if (t && t.loaded) t.byId.set(m.message_id, m);
        const conv = state.conversations.get(m.conversation);
        if (conv && (!conv.last_message || conv.last_message.sent_at <= m.sent_at)) {
          conv.last_message = m; conv.last_activity_at = m.sent_at;
        }
      } catch (err) {
        // Offline, a 5xx or throttled: retried on reconnect or after a pause, with the same client_id.
        if (err instanceof NetworkError || (err instanceof ApiError && err.status === 429)) break;
        item.error = err.message || "Not sent";
        saveOutbox();
      }
      renderInbox();
      if (item.conversation === state.current) renderConversation({ stickToBottom: true });
    }
  } finally {
    flushing = false;
  }
  if (state.outbox.some((o) => !o.error)) {
    clearTimeout(flushOutbox.timer);
    flushOutbox.timer = setTimeout(flushOutbox, 5000);
  }
}

// ---------------------------------------------------------------- read markers
let markTimer = null;
function markSeen() {
  clearTimeout(markTimer);
  markTimer = setTimeout(async () => {
    const id = state.current;
    const conv = state.conversations.get(id);
    if (!conv || !conv.unread_count || document.visibilityState !== "visible") return;
    const tl = $("timeline");
    if (tl.scrollHeight - tl.scrollTop - tl.clientHeight > 80) return; // newest not in view yet
    const newest = oldestFirst(timeline(id)).at(-1);
    try {
      const r = await api("POST", `/api/conversations/${id}/read/`, newest ? { message_id: newest.message_id } : {});
      const c = state.conversations.get(id);
      if (c) { c.unread_count = r.unread_count; renderInbox(); }
    } catch { /* retried the next time messages are seen */ }
  }, 250);
}

// ---------------------------------------------------------------- rendering: inbox
function conversationName(c) {
  if (c.title) return c.title;
  const others = c.participants.filter((p) => p.user_id !== state.me.user_id);
  if (!others.length) return "Just you";
  // Large groups list their first participants only (participant_count has them all).
  const more = (c.participant_count || 0) - c.participants.length;
  return others.map(fullName).join(", ") + (more > 0 ? ` and ${more} more` : "");
}
function preview(c) {
  const m = c.last_message;
  if (!m) return "No messages yet";
  const who = m.sender.user_id === state.me.user_id ? "You" : m.sender.first_name;
  return m.is_deleted ? `${who}: message deleted` : `${who}: ${textOf(m)}`;
}
function renderInbox() {
  const list = $("conversation-list");
  const convs = [...state.conversations.values()].sort((a, b) => (a.last_activity_at < b.last_activity_at ? 1 : -1));
  $("inbox-empty").hidden = convs.length > 0;
  const keep = new Map([...list.children].map((li) => [li.dataset.id, li]));
  let index = 0;
  for (const c of convs) {
    const name = conversationName(c);
    const unread = c.unread_count || 0;
    const mentions = c.unread_mentions || 0;
    const muted = Boolean(state.memberships.get(c.conversation_id)?.muted);
    const partner = directPartner(c);
    const seen = partner ? presenceOf(partner.user_id) : null;
    const sig = JSON.stringify([name, preview(c), unread, mentions, muted, c.conversation_id === state.current,
      seen && seen.online]);
    let li = keep.get(c.conversation_id);
    keep.delete(c.conversation_id);
    if (!li) { li = el("li"); li.dataset.id = c.conversation_id; }
    if (li.dataset.sig !== sig) {
      li.dataset.sig = sig;
      const button = el("button", {
        type: "button", class: "conversation-item", "aria-current": c.conversation_id === state.current ? "true" : null,
        onclick: () => openConversation(c.conversation_id),
      },
      el("span", { class: "conv-name" }, partner ? presenceDot(partner.user_id) : null, name,
        partner ? presenceLabel(partner.user_id) : null,
        muted ? el("span", { class: "conv-flags", text: "(muted)" }) : null),
      mentions ? el("span", { class: "badge mention" }, `@${mentions}`,
        el("span", { class: "visually-hidden", text: mentions === 1 ? " mention of you" : " mentions of you" })) : null,
      unread && !mentions ? el("span", { class: "badge" }, String(unread), el("span", { class: "visually-hidden", text: " unread" })) : null,
      el("span", { class: "conv-preview", text: preview(c) }));
      const hadFocus = li.contains(document.activeElement);
      li.replaceChildren(button);
      if (hadFocus) button.focus();
    }
    if (list.children[index] !== li) list.insertBefore(li, list.children[index] || null);
    index += 1;
  }
  for (const li of keep.values()) li.remove();
  syncPresence();
  $("inbox-empty").textContent = state.showArchived ? "No archived conversations."
    : "No conversations yet. Start one with “New conversation”.";
  $("archived-title").hidden = !state.showArchived;
  const total = state.showArchived ? 0 : convs.reduce((n, c) => n + (state.memberships.get(c.conversation_id)?.muted ? 0 : c.unread_count || 0), 0);
  document.title = `${total ? `(${total}) ` : ""}messaging_app – chat`;
}

// ---------------------------------------------------------------- rendering: the open conversation
async function openConversation(id, { focus = true } = {}) {
  state.current = id;
  state.removed.delete(id);
  state.replyTo = null; state.editing = null;
  store.setItem("webclient.current", id);
  $("chat-view").classList.add("showing-conversation");
  renderInbox();
  renderConversation();
  const t = timeline(id);
  if (!t.loaded) {
    try { await loadTimeline(id); } catch (err) { announce(err.message); }
  }
  if (state.current !== id) return;
  renderConversation({ stickToBottom: true });
  renderComposerContext();
  if (focus) $("composer-input").focus();
  markSeen();
  loadMembership(id);
}

// ---------------------------------------------------------------- your settings of a conversation: mute, archive
async function loadMembership(id) {
  try { state.memberships.set(id, await api("GET", `/api/conversations/${id}/membership/`)); } catch { return; }
  renderInbox();
  if (id === state.current) renderMembershipButtons();
}
function renderMembershipButtons() {
  const id = state.current;
  const mine = id && state.conversations.has(id) ? state.memberships.get(id) : null;
  $("mute-button").hidden = !mine;
  $("archive-button").hidden = !mine;
  if (!mine) return;
  $("mute-button").textContent = mine.muted ? "Unmute" : "Mute";
  $("mute-button").setAttribute("aria-pressed", String(mine.muted));
  $("archive-button").textContent = mine.archived ? "Unarchive" : "Archive";
}
async function changeMembership(change) {
  const id = state.current;
  try {
    applyMembership(id, await api("PATCH", `/api/conversations/${id}/membership/`, change));
  } catch (err) { announce(err.message); }
}
function applyMembership(id, mine) {
  const before = state.memberships.get(id);
  state.memberships.set(id, mine);
  if (!before || before.archived !== mine.archived) {
    // It moved between the inbox and the archive: it leaves the list on screen, or joins it.
    if (mine.archived !== state.showArchived) {
      state.conversations.delete(id);
      if (state.current === id) closeConversation();
      announce(mine.archived ? "Conversation archived" : "Conversation back in your inbox");
    } else if (!state.conversations.has(id)) {
      fetchConversation(id);
    }
  }
  renderInbox();
  if (id === state.current) renderMembershipButtons();
}

// ---------------------------------------------------------------- search
async function searchMessages(q) {
  const section = $("search-section");
  if (!q.trim()) { section.hidden = true; $("search-results").replaceChildren(); return; }
  let page;
  try { page = await api("GET", `/api/messages/?search=${encodeURIComponent(q)}&page_size=20`); } catch (err) {
    announce(err.message); return;
  }
  const items = page.results.map((m) => {
    const conv = state.conversations.get(m.conversation);
    const where = conv ? conversationName(conv) : "an archived conversation";
    return el("li", {}, el("button", { type: "button", onclick: () => openConversation(m.conversation) },
      el("span", { text: `${m.sender.user_id === state.me.user_id ? "You" : fullName(m.sender)}: ${textOf(m)}` }),
      el("span", { class: "where", text: `in ${where}, ${timeOf(m.sent_at)}` })));
  });
  $("search-results").replaceChildren(...(items.length ? items : [el("li", { class: "empty", text: "No message matches." })]));
  section.hidden = false;
  announce(`${page.count ?? items.length} ${items.length === 1 ? "message matches" : "messages match"}`);
}
async function toggleArchived() {
  state.showArchived = !state.showArchived;
  $("archived-toggle").setAttribute("aria-pressed", String(state.showArchived));
  $("archived-toggle").textContent = state.showArchived ? "Inbox" : "Archived";
  if (state.current) closeConversation();
  try { await loadInbox(); } catch (err) { announce(err.message); }
}
function closeConversation() {
  state.current = null;
  store.removeItem("webclient.current");
  $("chat-view").classList.remove("showing-conversation");
  renderInbox();
  renderConversation();
}
function messageNode(m, byId) {
  const mine = m.sender.user_id === state.me.user_id;
  const mentionsMe = !m.is_deleted && (m.mentions || []).includes(state.me.user_id);
  const li = el("li", { class: `message${mine ? " mine" : ""}${m.is_deleted ? " deleted" : ""}${mentionsMe ? " mentions-me" : ""}` });
  li.dataset.id = m.message_id || m.client_id;
  const meta = el("div", { class: "meta" },
    el("span", { class: "sender", text: mine ? "You" : fullName(m.sender) }),
    el("time", { datetime: m.sent_at, text: timeOf(m.sent_at) }),
    m.edited_at && !m.is_deleted ? el("span", { class: "edited", text: "(edited)" }) : null,
    m.pending && !m.error ? el("span", { class: "pending", text: "Sending…" }) : null,
    m.error ? el("span", { class: "failed", text: `Not sent: ${m.error}` }) : null,
    mentionsMe ? el("span", { class: "mention-note", text: "mentions you" }) : null);
  li.append(meta);
  if (m.parent_message) {
    const parent = byId.get(m.parent_message);
    const quote = parent ? `${fullName(parent.sender)}: ${parent.is_deleted ? "message deleted" : textOf(parent)}` : "an earlier message";
    li.append(el("div", { class: "quote", text: `Reply to ${quote}` }));
  }
  const files = !m.is_deleted && m.attachments && m.attachments.length ? m.attachments : null;
  if (m.is_deleted || m.message_body || !files) {
    li.append(el("div", { class: "body", text: m.is_deleted ? "This message was deleted." : m.message_body }));
  }
  if (files) li.append(attachmentsNode(m));
  if (!m.is_deleted && !m.pending && !state.removed.has(state.current)) {
    const label = (verb) => `${verb} message from ${mine ? "you" : fullName(m.sender)} at ${timeOf(m.sent_at)}`;
    const actions = el("div", { class: "actions" },
      el("button", { type: "button", class: "link", "aria-label": label("Reply to"), text: "Reply", onclick: () => startReply(m) }));
    if (mine) {
      actions.append(
        el("button", { type: "button", class: "link", "aria-label": label("Edit"), text: "Edit", onclick: () => startEdit(m) }),
        el("button", { type: "button", class: "link", "aria-label": label("Delete"), text: "Delete", onclick: () => deleteMessage(m) }));
    }
    li.append(actions);
  } else if (m.error) {
    li.append(el("button", { type: "button", class: "link", text: "Discard", onclick: () => discard(m.client_id) }));
  }
  return li;
}
function renderConversation({ stickToBottom = false, keepFromBottom = null } = {}) {
  const id = state.current;
  const conv = id && state.conversations.get(id);
  const removed = id && state.removed.has(id);
  $("members-button").hidden = !conv;
  renderMembershipButtons();
  $("composer").hidden = !conv;
  $("conversation-notice").hidden = !removed;
  if (removed) $("conversation-notice").textContent = "You are no longer a member of this conversation: it no longer updates.";
  if (!conv && !removed) {
    $("conversation-title").textContent = "No conversation open";
    $("conversation-presence").textContent = "";
    $("message-list").replaceChildren();
    $("load-older").hidden = true;
    renderTyping();
    return;
  }
  if (conv) $("conversation-title").textContent = conversationName(conv);
  renderPresenceHeader();
  const t = timeline(id);
  $("load-older").hidden = !(t.loaded && t.hasOlder) || Boolean(removed);
  const list = $("message-list");
  const tl = $("timeline");
  const atBottom = tl.scrollHeight - tl.scrollTop - tl.clientHeight < 80;
  const fromBottom = tl.scrollHeight - tl.scrollTop;
  const known = new Set([...t.byId.values()].map((m) => m.client_id).filter(Boolean));
  const pending = state.outbox.filter((o) => o.conversation === id && !known.has(o.client_id))
    .map((o) => ({ ...o, message_id: null, pending: true, sender: state.me, edited_at: null, is_deleted: false }));
  const messages = [...oldestFirst(t), ...pending];
  const keep = new Map([...list.children].map((li) => [li.dataset.key, li]));
  let index = 0;
  for (const m of messages) {
    const key = m.message_id || `pending:${m.client_id}`;
    const sig = JSON.stringify([m.message_body, m.edited_at, m.is_deleted, m.error, Boolean(removed), m.mentions,
      (m.attachments || []).map((a) => a.attachment_id),
      m.parent_message && t.byId.get(m.parent_message)?.message_body]);
    let li = keep.get(key);
    keep.delete(key);
    if (!li || li.dataset.sig !== sig) {
      const fresh = messageNode(m, t.byId);
      fresh.dataset.key = key; fresh.dataset.sig = sig;
      if (li) li.replaceWith(fresh);
      li = fresh;
    }
    if (list.children[index] !== li) list.insertBefore(li, list.children[index] || null);
    index += 1;
  }
  for (const li of keep.values()) li.remove();
  if (keepFromBottom !== null) tl.scrollTop = tl.scrollHeight - keepFromBottom;
  else if (stickToBottom || atBottom) tl.scrollTop = tl.scrollHeight;
  else tl.scrollTop = tl.scrollHeight - fromBottom;
  renderTyping();
}
async function loadOlder() {
  const id = state.current;
  const t = timeline(id);
  if (!id || !t.hasOlder || loadOlder.busy) return;
  loadOlder.busy = true;
  try {
    const tl = $("timeline");
    const fromBottom = tl.scrollHeight - tl.scrollTop;
    await loadTimeline(id, { older: true });
    if (state.current === id) renderConversation({ keepFromBottom: fromBottom });
  } catch (err) { announce(err.message); } finally { loadOlder.busy = false; }
}

// ---------------------------------------------------------------- composing: send, reply, edit, delete
function renderComposerContext() {
  const box = $("composer-context");
  const m = state.editing || state.replyTo;
  box.hidden = !m;
  if (!m) return;
  $("composer-context-text").textContent = state.editing
    ? "Editing your message" : `Replying to ${fullName(m.sender)}: ${textOf(m)}`;
}
function startReply(m) { state.editing = null; state.replyTo = m; renderComposerContext(); $("composer-input").focus(); }
function startEdit(m) {
  state.replyTo = null; state.editing = m;
  $("composer-input").value = m.message_body;
  renderComposerContext();
  $("composer-input").focus();
}
function cancelContext() {
  if (state.editing) $("composer-input").value = "";
  state.replyTo = null; state.editing = null;
  renderComposerContext();
}
async function deleteMessage(m) {
  if (!window.confirm("Delete this message for everyone?")) return;
  try {
    await api("DELETE", `/api/messages/${m.message_id}/`);
    timeline(m.conversation).byId.set(m.message_id, { ...m, is_deleted: true, message_body: "" });
    renderConversation();
    announce("Message deleted");
  } catch (err) { announce(`Could not delete: ${err.message}`); }
}
function discard(clientId) {
  state.outbox = state.outbox.filter((o) => o.client_id !== clientId);
  saveOutbox();
  renderConversation();
}
async function submitComposer(e) {
  e.preventDefault();
  const input = $("composer-input");
  const text = input.value.trim();
  const id = state.current;
  if (!id || state.removed.has(id)) return;
  if (state.editing) {
    if (!text) return;
    const m = state.editing;
    try {
      const updated = await api("PATCH", `/api/messages/${m.message_id}/`, { message_body: text });
      timeline(id).byId.set(updated.message_id, updated);
      input.value = "";
      cancelContext();
      renderConversation();
    } catch (err) { announce(`Could not edit: ${err.message}`); }
    return;
  }
  // An upload must be finished before its send is queued: the outbox only holds attachment ids.
  if (state.uploads.some((u) => !u.attachment && !u.error)) { announce("Wait for the uploads to finish"); return; }
  if (state.uploads.some((u) => u.error)) { announce("Remove the files that could not be uploaded first"); return; }
  const attachments = state.uploads.map((u) => u.attachment);
  if (!text && !attachments.length) return;
  const parent = state.replyTo;
  input.value = "";
  state.replyTo = null;
  state.uploads = [];
  renderUploads();
  renderComposerContext();
  queueSend(id, text, parent, attachments);
}

// ---------------------------------------------------------------- people: new conversation, members
function searchBox(input, results, onPick, exclude = () => false) {
  let timer = null;
  let seq = 0;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const q = input.value.trim();
      const mine = ++seq;
      if (!q) { results.replaceChildren(); return; }
      try {
        const page = await api("GET", `/api/users/?search=${encodeURIComponent(q)}&page_size=20`);
        if (mine !== seq) return;
        const people = page.results.filter((u) => u.user_id !== state.me.user_id && !exclude(u));
        results.replaceChildren(...(people.length ? people.map((u) => el("li", {},
          el("span", { text: fullName(u) }),
          el("button", { type: "button", class: "secondary", "aria-label": `Add ${fullName(u)}`, text: "Add", onclick: () => onPick(u) })))
          : [el("li", { text: "Nobody found" })]));
      } catch (err) { results.replaceChildren(el("li", { text: err.message })); }
    }, 200);
  });
}
const chosen = new Map();
function renderChosen() {
  $("new-selected").textContent = chosen.size ? [...chosen.values()].map(fullName).join(", ") : "nobody yet";
}
function openNewDialog() {
  chosen.clear(); renderChosen();
  $("new-search").value = ""; $("new-message").value = ""; $("new-error").textContent = "";
  $("new-results").replaceChildren();
  $("new-dialog").showModal();
  $("new-search").focus();
}
async function startConversation() {
  if (!chosen.size) { $("new-error").textContent = "Choose at least one person."; return; }
  const body = { participants: [...chosen.keys()] };
  const first = $("new-message").value.trim();
  if (first) body.messages = [{ message_body: first }];
  try {
    const c = await api("POST", "/api/conversations/", body);
    upsertConversation(c);
    $("new-dialog").close();
    await openConversation(c.conversation_id);
  } catch (err) { $("new-error").textContent = err.message; }
}
function renderMembers() {
  const conv = state.conversations.get(state.current);
  if (!conv) { if ($("members-dialog").open) $("members-dialog").close(); return; }
  const creator = conv.created_by && conv.created_by.user_id === state.me.user_id;
  $("members-list").replaceChildren(...conv.participants.map((p) => el("li", {},
    p.user_id === state.me.user_id ? el("span", { text: `${fullName(p)} (you)` })
      : el("span", {}, presenceDot(p.user_id), fullName(p), presenceLabel(p.user_id)),
    creator && p.user_id !== state.me.user_id
      ? el("button", { type: "button", class: "danger", "aria-label": `Remove ${fullName(p)}`, text: "Remove", onclick: () => removeMember(p) })
      : null)));
}
async function addMember(u) {
  try {
    const id = state.current;
    await api("POST", `/api/conversations/${id}/participants/`, { user_id: u.user_id });
    await fetchConversation(id);
    renderMembers(); renderConversation();
    $("members-results").replaceChildren(); $("members-search").value = "";
    announce(`${fullName(u)} added`);
  } catch (err) { $("members-error").textContent = err.message; }
}
async function removeMember(p) {
  if (!window.confirm(`Remove ${fullName(p)} from this conversation?`)) return;
  try {
    await api("DELETE", `/api/conversations/${state.current}/participants/${p.user_id}/`);
    await fetchConversation(state.current);
    renderMembers(); renderConversation();
    announce(`${fullName(p)} removed`);
  } catch (err) { $("members-error").textContent = err.message; }
}
async function leaveConversation() {
  if (!window.confirm("Leave this conversation?")) return;
  const id = state.current;
  try {
    await api("DELETE", `/api/conversations/${id}/participants/${state.me.user_id}/`);
    $("members-dialog").close();
    state.conversations.delete(id); state.timelines.delete(id);
    closeConversation();
    announce("You left the conversation");
  } catch (err) { $("members-error").textContent = err.message; }
}

// ---------------------------------------------------------------- settings
function openSettings() {
  $("settings-error").textContent = "";
  $("presence-visible").checked = Boolean(state.me && state.me.presence_visible);
  $("settings-dialog").showModal();
}
async function savePresenceVisible() {
  const box = $("presence-visible");
  const wanted = box.checked;
  box.disabled = true;
  $("settings-error").textContent = "";
  try {
    const me = await api("PATCH", "/api/users/me/", { presence_visible: wanted });
    state.me = { ...state.me, ...me };
    announce(me.presence_visible ? "Others can see when you are online" : "Your presence is hidden");
  } catch (err) {
    box.checked = !wanted;
    $("settings-error").textContent = `Not saved: ${err.message}`;
  } finally { box.disabled = false; }
}

// ---------------------------------------------------------------- wiring
function wire() {
  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("login-error").textContent = "";
    try { await login($("login-email").value.trim(), $("login-password").value); } catch (err) {
      $("login-error").textContent = err instanceof ApiError && err.status === 401
        ? "Wrong email or password." : err.message;
    }
  });
  $("register-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("register-error").textContent = "";
    try { await register(e.target); } catch (err) { $("register-error").textContent = err.message; }
  });
  $("logout").addEventListener("click", () => logout(true));
  $("new-conversation").addEventListener("click", openNewDialog);
  $("new-close").addEventListener("click", () => $("new-dialog").close());
  $("new-start").addEventListener("click", startConversation);
  // Enter in a dialog's field must not close it (a method="dialog" form would): only the first
  // message field starts the conversation with Enter.
  $("new-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (document.activeElement === $("new-message")) startConversation();
  });
  $("members-form").addEventListener("submit", (e) => e.preventDefault());
  searchBox($("new-search"), $("new-results"), (u) => { chosen.set(u.user_id, u); renderChosen(); });
  $("members-button").addEventListener("click", () => {
    $("members-error").textContent = ""; renderMembers(); $("members-dialog").showModal();
  });
  $("members-close").addEventListener("click", () => $("members-dialog").close());
  $("members-leave").addEventListener("click", leaveConversation);
  searchBox($("members-search"), $("members-results"), addMember,
    (u) => (state.conversations.get(state.current)?.participants || []).some((p) => p.user_id === u.user_id));
  $("back").addEventListener("click", closeConversation);
  $("mute-button").addEventListener("click", () => changeMembership({ muted: !state.memberships.get(state.current)?.muted }));
  $("archive-button").addEventListener("click", () => changeMembership({ archived: !state.memberships.get(state.current)?.archived }));
  $("archived-toggle").addEventListener("click", toggleArchived);
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); searchMessages($("search-input").value); });
  $("search-input").addEventListener("search", () => { if (!$("search-input").value) searchMessages(""); });
  $("load-older").addEventListener("click", loadOlder);
  $("timeline").addEventListener("scroll", () => {
    if ($("timeline").scrollTop < 40 && !state.removed.has(state.current)) loadOlder();
    markSeen();
  });
  $("composer").addEventListener("submit", submitComposer);
  $("composer-cancel").addEventListener("click", cancelContext);
  $("composer-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); $("composer").requestSubmit(); }
    if (e.key === "Escape") cancelContext();
  });
  $("composer-input").addEventListener("input", sendTyping);
  $("attach-button").addEventListener("click", () => $("file-input").click());
  $("file-input").addEventListener("change", (e) => { uploadFiles([...e.target.files]); e.target.value = ""; });
  $("composer-input").addEventListener("paste", (e) => {
    const files = [...(e.clipboardData?.files || [])].filter((f) => f.type.startsWith("image/"));
    if (files.length) { e.preventDefault(); uploadFiles(files); }
  });
  $("composer").addEventListener("dragover", (e) => {
    if ([...(e.dataTransfer?.types || [])].includes("Files")) { e.preventDefault(); $("composer").classList.add("dropping"); }
  });
  $("composer").addEventListener("dragleave", () => $("composer").classList.remove("dropping"));
  $("composer").addEventListener("drop", (e) => {
    $("composer").classList.remove("dropping");
    const files = [...(e.dataTransfer?.files || [])];
    if (files.length) { e.preventDefault(); uploadFiles(files); }
  });
  $("image-close").addEventListener("click", closeImage);
  $("image-dialog").addEventListener("close", () => {
    const img = $("image-full");
    if (img.src.startsWith("blob:")) { URL.revokeObjectURL(img.src); img.removeAttribute("src"); }
  });
  $("settings-button").addEventListener("click", openSettings);
  $("settings-close").addEventListener("click", () => $("settings-dialog").close());
  $("presence-visible").addEventListener("change", savePresenceVisible);
  setInterval(renderPresenceHeader, 30000); // "last seen 3 min ago" ages
  document.addEventListener("visibilitychange", markSeen);
  window.addEventListener("focus", markSeen);
  window.addEventListener("online", () => { if (socket.wanted && !socket.ws) socket.connect(); flushOutbox(); });
}

wire();
const saved = JSON.parse(store.getItem("webclient.tokens") || "null");
if (saved && saved.refresh) {
  state.access = saved.access; state.refresh = saved.refresh;
  start();
} else {
  logout(false);
}
