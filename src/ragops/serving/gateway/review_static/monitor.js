/* ragops monitoring page: vanilla JS, no dependencies. It fetches the dashboard HTML from
   /v1/monitor/report with the key the user entered (the review app's sessionStorage entry, so one
   sign-in covers both) and shows it in a sandboxed frame (srcdoc; the frame runs no script). */
"use strict";

const KEY_STORAGE = "ragops-api-key";
const $ = (id) => document.getElementById(id);
const state = { key: sessionStorage.getItem(KEY_STORAGE) || "", loading: false };

function show(el, visible) { el.hidden = !visible; }
function setError(el, message) { el.textContent = message || ""; show(el, Boolean(message)); }

function signOut(message) {
  sessionStorage.removeItem(KEY_STORAGE);
  state.key = "";
  show($("nav"), false); show($("report"), false); show($("loading"), false);
  setError($("report-error"), "");
  show($("key-view"), true);
  setError($("key-error"), message || "");
  $("api-key").value = "";
  $("api-key").focus();
}

/* The frame is as tall as the report, so the page scrolls as one (allow-same-origin lets us measure it). */
function fitFrame() {
  const frame = $("report");
  let doc = null;
  try { doc = frame.contentDocument; } catch (e) { /* not measurable: it keeps its min-height and scrolls */ }
  if (!doc || !doc.documentElement) return;
  // the <html> box is as tall as the content (scrollHeight would be at least the frame's own height)
  const height = Math.ceil(doc.documentElement.getBoundingClientRect().height);
  if (height > 0) {
    frame.style.height = `${height}px`;
    frame.style.minHeight = "0";
    frame.setAttribute("scrolling", "no");  // sized to its content: the page scrolls, not the frame
  }
}

async function loadReport() {
  if (state.loading) return;
  state.loading = true;
  const started = performance.now();
  $("status").textContent = "Loading…";
  show($("loading"), $("report").hidden);
  setError($("report-error"), "");
  let response;
  try {
    response = await fetch("/v1/monitor/report", { headers: { Authorization: `Bearer ${state.key}` }, cache: "no-store" });
  } catch (e) {
    state.loading = false;
    show($("loading"), false);
    $("status").textContent = "";
    setError($("report-error"), "The gateway cannot be reached (is it running?).");
    return;
  }
  state.loading = false;
  if (response.status === 401) { signOut("That key was not accepted: check it and try again."); return; }
  if (!response.ok) {
    let message = `HTTP ${response.status}`;
    try { message = (await response.json()).error.message || message; } catch (e) { /* not JSON */ }
    show($("loading"), false);
    $("status").textContent = "";
    setError($("report-error"), `The report could not be built: ${message}`);
    return;
  }
  const html = await response.text();
  sessionStorage.setItem(KEY_STORAGE, state.key);
  show($("key-view"), false); show($("loading"), false); show($("nav"), true);
  const frame = $("report");
  const shown = new Promise((resolve) => frame.addEventListener("load", resolve, { once: true }));
  frame.srcdoc = html;
  show(frame, true);
  await shown;  // laid out and sized: only now is it "loaded"
  fitFrame();
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  $("status").textContent = `Report loaded ${new Date().toLocaleTimeString()} (${Math.round(html.length / 1024)} KB, ${seconds} s)`;
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("api-key").value.trim();
  if (!key) return;
  state.key = key;
  setError($("key-error"), "");
  loadReport();
});
$("refresh").addEventListener("click", loadReport);
$("forget-key").addEventListener("click", () => signOut(""));
$("report").addEventListener("load", fitFrame);
window.addEventListener("resize", fitFrame);

if (state.key) loadReport(); else $("api-key").focus();
