/* ragops review app: vanilla JS, no dependencies. Every data call goes to the gateway's JSON API
   with the key the user entered (kept in sessionStorage for this tab only). Data is always put in
   the page with textContent, never as HTML. */
"use strict";

const KEY_STORAGE = "ragops-api-key";
const $ = (id) => document.getElementById(id);
const state = { key: sessionStorage.getItem(KEY_STORAGE) || "", requestId: null, rating: null, readyTimer: null };

function show(el, visible) { el.hidden = !visible; }
function setError(el, message) { el.textContent = message || ""; show(el, Boolean(message)); }
function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `HTTP ${status}`);
    this.status = status; this.code = err.code || null; this.type = err.type || null;
  }
}

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: `Bearer ${state.key}` }, options.headers || {});
  if (options.body) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, Object.assign({}, options, { headers }));
  } catch (e) {
    throw new ApiError(0, { error: { message: "The gateway cannot be reached (is it running?)." } });
  }
  if (response.status === 401) { signOut("That key was not accepted: check it and try again."); }
  if (!response.ok) {
    let body = null;
    try { body = await response.json(); } catch (e) { /* not JSON */ }
    throw new ApiError(response.status, body);
  }
  return response;
}

function capitalize(text) { return text ? text[0].toUpperCase() + text.slice(1) : text; }
function ratingLabel(rating) { return rating === "up" ? "Thumbs up" : rating === "down" ? "Thumbs down" : String(rating); }

/* What a failed call means to a person. */
function explain(e) {
  if (e.status === 401) return "That key was not accepted.";
  if (e.status === 503) return `The model is not ready yet (still loading). ${e.message}`;
  if (e.status === 502 || e.status === 504) return capitalize(e.message);
  if (e.status === 429) return `Rate limit reached: ${e.message}`;
  if (e.type === "guardrail" || e.code === "content_refused") return `Refused by a guardrail${e.code && e.code !== "content_refused" ? ` (${e.code})` : ""}: ${e.message}`;
  if (e.status === 0) return e.message;
  return `Error ${e.status}: ${e.message}`;
}

/* --- sign in ------------------------------------------------------------------------------- */

function signOut(message) {
  sessionStorage.removeItem(KEY_STORAGE);
  state.key = "";
  show($("nav"), false); show($("chat-view"), false); show($("review-view"), false);
  show($("key-view"), true);
  setError($("key-error"), message || "");
  $("api-key").value = "";
  $("api-key").focus();
}

async function signIn(key) {
  state.key = key;
  const response = await api("/v1/models");  // a 401 signs out again with a message
  const models = (await response.json()).data || [];
  sessionStorage.setItem(KEY_STORAGE, key);
  const select = $("route");
  select.replaceChildren(...models.map((m) => { const o = el("option", m.id); o.value = m.id; return o; }));
  if (!models.length) setError($("chat-error"), "This gateway has no routes configured.");
  show($("key-view"), false); show($("nav"), true);
  switchView("chat");
  checkReady();
}

async function checkReady() {
  clearTimeout(state.readyTimer);
  let ready = false, detail = "";
  try {
    const r = await fetch("/ready");
    const body = await r.json();
    ready = r.ok && body.ready;
    detail = Object.entries(body.targets || {}).filter(([, s]) => s !== "ready").map(([t, s]) => `${t}: ${s}`).join(", ");
  } catch (e) { detail = "the gateway cannot be reached"; }
  const banner = $("banner");
  if (ready) { show(banner, false); return; }
  banner.textContent = `Model not ready yet (${detail || "loading"}). Answers may fail until it is; checking again…`;
  show(banner, true);
  state.readyTimer = setTimeout(checkReady, 3000);
}

/* --- views --------------------------------------------------------------------------------- */

function switchView(name) {
  const chat = name === "chat";
  show($("chat-view"), chat); show($("review-view"), !chat);
  $("tab-chat").setAttribute("aria-pressed", String(chat));
  $("tab-review").setAttribute("aria-pressed", String(!chat));
  if (!chat) loadRecent();
}

/* --- chat ---------------------------------------------------------------------------------- */

function renderSources(sources) {
  const table = $("sources"), body = table.querySelector("tbody");
  body.replaceChildren();
  (sources || []).forEach((s, i) => {
    const tr = el("tr");
    tr.append(el("td", i + 1), el("td", s.doc_id, "mono"));
    const cell = el("td");
    const uri = s.source_uri || "";
    if (/^https?:\/\//i.test(uri)) { const a = el("a", uri); a.href = uri; a.rel = "noopener noreferrer"; a.target = "_blank"; cell.append(a); }
    else cell.append(el("span", uri || "—", "mono"));
    tr.append(cell, el("td", typeof s.score === "number" ? s.score.toFixed(3) : (s.score ?? "—"), "num"));
    body.append(tr);
  });
  const any = (sources || []).length > 0;
  show(table, any); show($("no-sources"), !any);
}

function resetFeedback() {
  state.rating = null;
  for (const id of ["thumb-up", "thumb-down"]) $(id).setAttribute("aria-pressed", "false");
  $("comment").value = ""; $("corrected").value = "";
  $("send-feedback").disabled = true;
  $("feedback-status").textContent = "";
}

async function readStream(response, onText) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "", final = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return final;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new ApiError(502, chunk);
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (delta && delta.content) onText(delta.content);
        if (chunk.choices && chunk.choices.length === 0) final = chunk;
      }
    }
  }
  return final;
}

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question) return;
  const stream = $("stream").checked, route = $("route").value;
  setError($("chat-error"), "");
  $("ask").disabled = true; $("ask").textContent = "Asking…";
  const answer = $("answer");
  answer.textContent = ""; $("answer-meta").textContent = "";
  show($("result"), false); show($("feedback-form"), false); resetFeedback();
  try {
    const response = await api("/v1/chat/completions", {
      method: "POST", body: JSON.stringify({ model: route, stream, messages: [{ role: "user", content: question }] }),
    });
    state.requestId = response.headers.get("X-Request-Id");
    let sources = [], meta = {};
    if (stream) {
      show($("result"), true);
      renderSources([]); show($("no-sources"), false);
      const final = await readStream(response, (text) => { answer.textContent += text; });
      if (final) { sources = final.sources || []; meta = final; }
    } else {
      const body = await response.json();
      state.requestId = body.id || state.requestId;
      answer.textContent = (body.choices && body.choices[0].message.content) || "";
      sources = body.sources || []; meta = body;
    }
    $("answer-meta").textContent = `· ${route}${meta.model_version ? ` · model v${meta.model_version}` : ""}`;
    renderSources(sources);
    show($("result"), true); show($("feedback-form"), Boolean(state.requestId));
  } catch (e) {
    if (e.status !== 401) setError($("chat-error"), explain(e));
    if (e.status === 503) checkReady();
  } finally {
    $("ask").disabled = false; $("ask").textContent = "Ask";
  }
}

function pickRating(rating) {
  state.rating = rating;
  $("thumb-up").setAttribute("aria-pressed", String(rating === "up"));
  $("thumb-down").setAttribute("aria-pressed", String(rating === "down"));
  $("send-feedback").disabled = false;
  $("feedback-status").textContent = "";
}

async function sendFeedback(event) {
  event.preventDefault();
  if (!state.rating || !state.requestId) return;
  const status = $("feedback-status");
  status.className = ""; status.textContent = "Sending…";
  $("send-feedback").disabled = true;
  try {
    const body = { request_id: state.requestId, rating: state.rating };
    const comment = $("comment").value.trim(), corrected = $("corrected").value.trim();
    if (comment) body.comment = comment;
    if (corrected) body.corrected_answer = corrected;
    await api("/v1/feedback", { method: "POST", body: JSON.stringify(body) });
    status.textContent = `Thanks: your ${ratingLabel(state.rating).toLowerCase()} is saved.`;
    status.className = "ok";
  } catch (e) {
    status.textContent = explain(e); status.className = "error";
  } finally {
    $("send-feedback").disabled = false;
  }
}

/* --- reviewer ------------------------------------------------------------------------------ */

function listCell(items, render) {
  const td = el("td");
  if (!items || !items.length) { td.append(el("span", "—", "empty")); return td; }
  const ul = el("ul", null, "plain");
  for (const item of items) ul.append(render(item));
  td.append(ul);
  return td;
}

/* A guardrail outcome: {check, stage, action: pass|blocked|redacted|refused|skipped, score?, entities?}
   (older rows or other checks may carry passed/blocked booleans instead). */
function guardrailItem(g) {
  const action = g.action || (g.passed === false || g.blocked ? "blocked" : "pass");
  const mark = { pass: "✓", blocked: "✗", refused: "✗", redacted: "•", skipped: "–" }[action] || "•";
  const cls = { pass: "pass", blocked: "fail", refused: "fail", redacted: "warn" }[action] || "meta";
  let detail = "";
  if (Array.isArray(g.entities) && g.entities.length) detail = `: ${g.entities.join(", ")}`;
  else if (typeof g.score === "number" && action !== "pass") detail = ` (score ${g.score.toFixed(2)})`;
  const li = el("li", `${mark} ${g.check || g.name || "check"}${g.stage ? ` · ${g.stage}` : ""} · ${action}${detail}`, cls);
  if (g.reason) li.title = g.reason;
  return li;
}

function feedbackItem(f) {
  const li = el("li");
  li.append(el("span", ratingLabel(f.rating), `badge ${f.rating === "up" ? "up" : "down"}`),
    el("span", ` by ${f.key_name || "?"}`, "meta"));
  if (f.comment) li.append(el("div", `“${f.comment}”`, "comment"));
  if (f.corrected_answer) li.append(el("div", `Corrected: ${f.corrected_answer}`, "corrected"));
  return li;
}

async function loadRecent() {
  setError($("review-error"), "");
  $("review-count").textContent = "Loading…";
  try {
    const response = await api(`/v1/review/recent?limit=${encodeURIComponent($("limit").value)}`);
    const rows = (await response.json()).data || [];
    const body = $("recent").querySelector("tbody");
    body.replaceChildren();
    for (const r of rows) {
      const tr = el("tr");
      const time = r.timestamp ? new Date(r.timestamp) : null;
      const when = el("td", time && !isNaN(time) ? time.toLocaleString() : (r.timestamp || "—"));
      if (time) when.title = r.timestamp;
      const qa = el("td", null, "qa");
      qa.append(el("div", r.question || "—", "q"), el("div", r.answer || (r.error ? `(${r.error})` : "—"), "a"));
      qa.append(el("div", r.request_id, "mono meta"));
      tr.append(when, el("td", r.key_name || "—"), el("td", r.route || "—"),
        el("td", `${r.status || "—"}${r.http_status ? ` (${r.http_status})` : ""}`, r.status === "ok" ? "pass" : "fail"),
        qa,
        listCell(r.sources, (s) => el("li", `${s.doc_id} · ${s.source_uri || ""}${typeof s.score === "number" ? ` · ${s.score.toFixed(2)}` : ""}`, "mono")),
        listCell(r.guardrails, guardrailItem), listCell(r.feedback, feedbackItem));
      body.append(tr);
    }
    show($("recent"), rows.length > 0); show($("review-empty"), rows.length === 0);
    $("review-count").textContent = `${rows.length} answer${rows.length === 1 ? "" : "s"}`;
  } catch (e) {
    $("review-count").textContent = "";
    if (e.status !== 401) setError($("review-error"), `Could not load recent answers. ${explain(e)}`);
  }
}

/* --- wiring -------------------------------------------------------------------------------- */

document.addEventListener("DOMContentLoaded", () => {
  $("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) return;
    setError($("key-error"), "");
    try { await signIn(key); } catch (e) { if (e.status !== 401) setError($("key-error"), explain(e)); }
  });
  $("forget-key").addEventListener("click", () => signOut(""));
  $("tab-chat").addEventListener("click", () => switchView("chat"));
  $("tab-review").addEventListener("click", () => switchView("review"));
  $("chat-form").addEventListener("submit", ask);
  $("thumb-up").addEventListener("click", () => pickRating("up"));
  $("thumb-down").addEventListener("click", () => pickRating("down"));
  $("feedback-form").addEventListener("submit", sendFeedback);
  $("refresh").addEventListener("click", loadRecent);
  $("limit").addEventListener("change", loadRecent);
  if (state.key) signIn(state.key).catch((e) => { if (e.status !== 401) signOut(explain(e)); });
  else signOut("");
});
