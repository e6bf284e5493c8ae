// The sketch pad: draw (Pointer Events), preview x_0 after a pause, search, inspect a case.
// Plain script, no dependencies: everything the page needs is served by the app itself.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "s2m.apiKey"; // sessionStorage: kept for this browser session only
const PREVIEW_PAUSE_MS = 450;
const PREVIEW_K = 10;
const CHANNELS = ["appearance", "latent", "shape"];

// ---------------------------------------------------------------- API access

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function apiKey() { return sessionStorage.getItem(KEY_STORE) || ""; }

// One readable sentence for every way a call can fail (the API's own message where it sent one).
function explain(status, message) {
  const said = message ? ` ${message}` : "";
  switch (status) {
    case 0: return "The service cannot be reached; check that it is running.";
    case 401: return `The API key was refused (401).${said} Enter a valid key above.`;
    case 403: return `This API key may not do that (403).${said}`;
    case 413: return `The picture is too large for the service (413).${said}`;
    case 415: return `The service does not accept that file type (415).${said}`;
    case 422: return `The service could not use this sketch (422).${said}`;
    case 429: return `Too many requests (429); wait a moment.${said}`;
    case 503: return `The service is not ready (503).${said} Try again shortly.`;
    default: return `The service answered ${status}.${said}`;
  }
}

async function call(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (apiKey()) headers.set("Authorization", `Bearer ${apiKey()}`);
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "");
  }
  if (!response.ok) {
    let message = "";
    try { message = (await response.json()).error || ""; } catch (_) { /* not JSON */ }
    throw new ApiError(response.status, message);
  }
  return response;
}

const callJson = async (path, options) => (await call(path, options)).json();

// Images behind the key cannot be <img src>: fetch them with the key and show a blob URL.
const blobUrls = new Map();
async function authImage(path) {
  if (!blobUrls.has(path)) {
    const blob = await (await call(path)).blob();
    blobUrls.set(path, URL.createObjectURL(blob));
  }
  return blobUrls.get(path);
}

function showError(error) {
  if (error && error.name === "AbortError") return;
  const text = error instanceof ApiError ? explain(error.status, error.message) : String(error && error.message || error);
  $("error-text").textContent = text;
  $("error").hidden = false;
}
function hideError() { $("error").hidden = true; }
$("error-close").addEventListener("click", hideError);

// ---------------------------------------------------------------- the API key

function showKeyState() {
  $("key-state").textContent = apiKey() ? "key set for this session" : "no key yet";
}
$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("api-key").value.trim();
  if (value) sessionStorage.setItem(KEY_STORE, value); else sessionStorage.removeItem(KEY_STORE);
  $("api-key").value = "";
  blobUrls.clear();
  hideError();
  showKeyState();
});
showKeyState();

// ---------------------------------------------------------------- drawing

const canvas = $("canvas");
const ctx = canvas.getContext("2d");
const pad = {
  tool: "pen",
  items: [],   // what is on the canvas, in order: strokes and uploaded pictures
  undone: [],  // items taken back by undo, for redo
  current: null,
};

function setTool(tool) {
  pad.tool = tool;
  for (const [name, button] of [["pen", $("tool-pen")], ["eraser", $("tool-eraser")]]) {
    button.classList.toggle("active", name === tool);
    button.setAttribute("aria-pressed", String(name === tool));
  }
}

// Pressure of a pen widens or thins its stroke; a mouse reports 0.5 while pressed.
function pointOf(event) {
  const box = canvas.getBoundingClientRect();
  const pressure = event.pointerType === "pen" && event.pressure > 0 ? event.pressure : 0.5;
  return [(event.clientX - box.left) / box.width, (event.clientY - box.top) / box.height, pressure];
}

function drawItem(item) {
  if (item.kind === "clear") { ctx.clearRect(0, 0, canvas.width, canvas.height); return; }
  if (item.kind === "picture") {
    const side = canvas.width, scale = Math.min(side / item.bitmap.width, side / item.bitmap.height);
    const w = item.bitmap.width * scale, h = item.bitmap.height * scale;
    ctx.globalCompositeOperation = "source-over";
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, side, side);
    ctx.drawImage(item.bitmap, (side - w) / 2, (side - h) / 2, w, h);
    return;
  }
  ctx.globalCompositeOperation = item.tool === "eraser" ? "destination-out" : "source-over";
  ctx.strokeStyle = "#000";
  ctx.fillStyle = "#000";
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  const px = (p) => [p[0] * canvas.width, p[1] * canvas.height];
  const widthAt = (p) => item.width * (item.tool === "eraser" ? 3 : 1) * (0.5 + p[2]);
  if (item.points.length === 1) {
    const [x, y] = px(item.points[0]);
    ctx.beginPath();
    ctx.arc(x, y, widthAt(item.points[0]) / 2, 0, 2 * Math.PI);
    ctx.fill();
  }
  for (let i = 1; i < item.points.length; i++) {
    const [x0, y0] = px(item.points[i - 1]);
    const [x1, y1] = px(item.points[i]);
    ctx.lineWidth = widthAt(item.points[i]);
    ctx.beginPath();
    ctx.moveTo(x0, y0);
    ctx.lineTo(x1, y1);
    ctx.stroke();
  }
  ctx.globalCompositeOperation = "source-over";
}

function redraw() {
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  for (const item of pad.items) drawItem(item);
  canvas.dataset.items = String(pad.items.length); // what is drawn, for scripts and tests
  $("undo").disabled = pad.items.length === 0;
  $("redo").disabled = pad.undone.length === 0;
}

function commit(item) {
  pad.items.push(item);
  pad.undone = [];
  redraw();
  schedulePreview();
}

canvas.addEventListener("pointerdown", (event) => {
  if (event.button !== 0 && event.pointerType === "mouse") return;
  event.preventDefault();
  try { canvas.setPointerCapture(event.pointerId); } catch (_) { /* a pointer the browser no longer tracks */ }
  const tool = event.pointerType === "pen" && event.button === 5 ? "eraser" : pad.tool; // a pen's eraser end
  pad.current = { kind: "stroke", tool, width: Number($("stroke-width").value), points: [pointOf(event)], pointer: event.pointerId };
  cancelPreview();
  redraw();
  drawItem(pad.current);
});

canvas.addEventListener("pointermove", (event) => {
  const stroke = pad.current;
  if (!stroke || stroke.pointer !== event.pointerId) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of events.length ? events : [event]) stroke.points.push(pointOf(e));
  redraw();
  drawItem(stroke);
});

function endStroke(event) {
  const stroke = pad.current;
  if (!stroke || stroke.pointer !== event.pointerId) return;
  pad.current = null;
  delete stroke.pointer;
  commit(stroke);
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

function undo() {
  if (!pad.items.length) return;
  pad.undone.push(pad.items.pop());
  redraw();
  schedulePreview();
}
function redo() {
  if (!pad.undone.length) return;
  pad.items.push(pad.undone.pop());
  redraw();
  schedulePreview();
}
function clearPad() {
  if (!pad.items.length) return;
  commit({ kind: "clear" });
}

$("tool-pen").addEventListener("click", () => setTool("pen"));
$("tool-eraser").addEventListener("click", () => setTool("eraser"));
$("undo").addEventListener("click", undo);
$("redo").addEventListener("click", redo);
$("clear").addEventListener("click", clearPad);

document.addEventListener("keydown", (event) => {
  if (event.target.closest("input, textarea, select") || $("detail").open) return;
  const key = event.key.toLowerCase();
  const mod = event.ctrlKey || event.metaKey;
  if (mod && key === "z" && !event.shiftKey) undo();
  else if (mod && (key === "y" || (key === "z" && event.shiftKey))) redo();
  else if (!mod && key === "p") setTool("pen");
  else if (!mod && key === "e") setTool("eraser");
  else if (!mod && (key === "delete" || key === "backspace")) clearPad();
  else return;
  event.preventDefault();
});

$("upload").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  event.target.value = "";
  if (!file) return;
  try {
    commit({ kind: "picture", bitmap: await createImageBitmap(file) });
  } catch (_) {
    showError(new Error("That file could not be read as a picture; upload a PNG or JPEG sketch."));
  }
});

// The drawing alone (never the template), on white, as the PNG the API reads.
function sketchBlob() {
  const out = document.createElement("canvas");
  out.width = canvas.width;
  out.height = canvas.height;
  const octx = out.getContext("2d");
  octx.fillStyle = "#fff";
  octx.fillRect(0, 0, out.width, out.height);
  octx.drawImage(canvas, 0, 0);
  return new Promise((resolve) => out.toBlob(resolve, "image/png"));
}

function hasInk() {
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) return true;
  return false;
}

// ---------------------------------------------------------------- template to trace over

async function showTemplate(imageId) {
  const img = $("template");
  img.src = await authImage(`/v1/images/${imageId}/file`);
  img.hidden = false;
  img.dataset.imageId = String(imageId);
}
$("template-example").addEventListener("click", async () => {
  try {
    const example = await callJson("/v1/images/example");
    $("template-id").value = example.image_id;
    await showTemplate(example.image_id);
  } catch (error) { showError(error); }
});
$("template-load").addEventListener("click", async () => {
  const id = parseInt($("template-id").value, 10);
  if (!(id > 0)) { showError(new Error("Enter the id of an archive case to trace over.")); return; }
  try { await showTemplate(id); } catch (error) { showError(error); }
});
$("template-hide").addEventListener("click", () => { $("template").hidden = true; });

// ---------------------------------------------------------------- searching

function filters() {
  const f = {};
  const diagnosis = $("f-diagnosis").value.trim();
  if (diagnosis) f.diagnosis = [diagnosis];
  if ($("f-from").value) f.date_from = $("f-from").value;
  if ($("f-to").value) f.date_to = $("f-to").value;
  return f;
}

async function searchSketch(k, refine, signal) {
  const form = new FormData();
  form.append("sketch", await sketchBlob(), "sketch.png");
  form.append("k", String(k));
  form.append("refine", refine ? "true" : "false");
  const f = filters();
  for (const d of f.diagnosis || []) form.append("diagnosis", d);
  if (f.date_from) form.append("date_from", f.date_from);
  if (f.date_to) form.append("date_to", f.date_to);
  const signs = activeSigns(); // signs.js: the clinical signs switched on in the Signs panel
  if (Object.keys(signs).length) form.append("signs", JSON.stringify(signs));
  return callJson("/v1/search", { method: "POST", body: form, signal });
}

// Live preview: x_0 and a provisional top 10, a short pause after the pen stops.
let previewTimer = null;
let previewAbort = null;
function cancelPreview() {
  clearTimeout(previewTimer);
  if (previewAbort) previewAbort.abort();
  previewAbort = null;
}
function schedulePreview() {
  cancelPreview();
  scheduleSignPicture(); // signs.js: the generated picture with the signs follows the drawing too
  if (!inPatientView()) previewTimer = setTimeout(runPreview, PREVIEW_PAUSE_MS); // the patient view shows no cases
}
async function runPreview() {
  if (!apiKey() || !hasInk()) { $("preview-state").textContent = apiKey() ? "" : "(enter an API key)"; return; }
  const abort = new AbortController();
  previewAbort = abort;
  $("preview-state").textContent = "…";
  try {
    const answer = await searchSketch(PREVIEW_K, false, abort.signal);
    if (abort.signal.aborted) return;
    $("preview-x0").src = await authImage(answer.step_urls[0] || answer.generated_image_url);
    const strip = $("preview-hits");
    strip.replaceChildren();
    for (const hit of answer.results) {
      const li = document.createElement("li");
      const img = document.createElement("img");
      img.alt = `case ${hit.image_id}`;
      li.append(img, document.createTextNode(`#${hit.rank}`));
      li.title = `${hit.diagnosis || ""} ${hit.score.toFixed(3)}`;
      strip.append(li);
      authImage(hit.thumbnail_url).then((url) => { img.src = url; }).catch(() => {});
    }
    $("preview-state").textContent = `(${Math.round(answer.timings_ms.total || sumTimings(answer.timings_ms))} ms)`;
    document.body.dataset.previewQuery = answer.query_id;
    hideError();
  } catch (error) {
    if (error.name === "AbortError") return;
    $("preview-state").textContent = "";
    showError(error);
  } finally {
    if (previewAbort === abort) previewAbort = null;
  }
}

const sumTimings = (t) => Object.values(t).reduce((a, b) => a + b, 0);

let lastAnswer = null;

$("search-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  cancelPreview();
  hideError();
  const k = Math.max(1, Math.min(100, parseInt($("k").value, 10) || 12));
  $("search").disabled = true;
  $("results-title").textContent = "Searching…";
  try {
    const answer = await searchSketch(k, $("refine").checked);
    await showResults(answer, "Results for your sketch");
  } catch (error) {
    $("results-title").textContent = "Results";
    showError(error);
  } finally {
    $("search").disabled = false;
  }
});

async function showSteps(answer) {
  const row = $("steps-row");
  row.replaceChildren();
  row.hidden = answer.step_urls.length === 0;
  for (const [t, url] of answer.step_urls.entries()) {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.alt = `x_${t}`;
    const caption = document.createElement("figcaption");
    caption.innerHTML = `x<sub>${t}</sub>`;
    figure.append(img, caption);
    row.append(figure);
    img.src = await authImage(url);
  }
}

function showTimings(timings) {
  const body = $("timings").tBodies[0];
  body.replaceChildren();
  const names = Object.keys(timings);
  $("timings").hidden = names.length === 0;
  const header = document.createElement("tr"), values = document.createElement("tr");
  for (const name of names) {
    header.insertCell().textContent = name;
    values.insertCell().textContent = `${timings[name].toFixed(1)} ms`;
  }
  body.append(header, values);
}

// Each channel's bar spans this answer's range of that channel (scores of different channels are
// on different scales: cosines for appearance and latent, minus a chamfer distance for shape).
function channelRanges(results) {
  const ranges = {};
  for (const c of CHANNELS) {
    const values = results.map((h) => h.channels[c]);
    ranges[c] = [Math.min(...values), Math.max(...values)];
  }
  return ranges;
}

function bar(channel, value, [low, high]) {
  const row = document.createElement("div");
  row.className = `bar ${channel}`;
  const share = high > low ? 0.1 + 0.9 * (value - low) / (high - low) : 1;
  row.innerHTML = `<span>${channel}</span><span class="track"><span class="fill"></span></span><span class="value"></span>`;
  row.querySelector(".fill").style.width = `${(share * 100).toFixed(1)}%`;
  row.querySelector(".value").textContent = value.toFixed(2);
  return row;
}

// What a card says first: the hit's percentiles in one sentence (the raw scores stay in its details).
function similarityText(hit) {
  return hit.similarity || `score ${hit.score.toFixed(3)} (no percentiles for this index build)`;
}

async function showResults(answer, title) {
  const previous = lastAnswer;
  lastAnswer = answer;
  $("results-title").textContent = `${title}${signsText(answer.signs)}: ${answer.results.length} cases`;
  $("results-hint").hidden = true;
  await showSteps(answer);
  showTimings(answer.timings_ms);
  const grid = $("grid");
  grid.replaceChildren();
  grid.dataset.queryId = answer.query_id;
  const ranges = channelRanges(answer.results);
  const seen = new Set([...$("diagnoses").options].map((o) => o.value));
  for (const hit of answer.results) {
    const card = document.createElement("li");
    card.className = "hit";
    card.tabIndex = 0;
    card.dataset.imageId = String(hit.image_id);
    const img = document.createElement("img");
    img.alt = `case ${hit.image_id}`;
    const titleRow = document.createElement("div");
    titleRow.className = "title";
    titleRow.innerHTML = "<span class=rank></span>";
    titleRow.querySelector(".rank").textContent = `#${hit.rank}`;
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = `${hit.diagnosis || "no diagnosis"} · ${hit.study_date || "no date"}`;
    const similarity = document.createElement("p");
    similarity.className = "similarity";
    similarity.textContent = similarityText(hit);
    const scores = document.createElement("details");
    scores.className = "scores";
    scores.innerHTML = "<summary>scores</summary><div class=fused>fused <span class=score></span></div>";
    scores.querySelector(".score").textContent = hit.score.toFixed(3);
    scores.append(...CHANNELS.map((c) => bar(c, hit.channels[c], ranges[c])));
    scores.addEventListener("click", (e) => e.stopPropagation());
    card.append(img, titleRow, meta, similarity, scores, markButtons(hit));
    card.addEventListener("click", () => openDetail(hit));
    card.addEventListener("keydown", (e) => { if (e.key === "Enter") openDetail(hit); });
    grid.append(card);
    authImage(hit.thumbnail_url).then((url) => { img.src = url; }).catch(() => {});
    if (hit.diagnosis && !seen.has(hit.diagnosis)) {
      seen.add(hit.diagnosis);
      $("diagnoses").append(new Option(hit.diagnosis, hit.diagnosis));
    }
  }
  showLoop(answer, previous);
}

// ---------------------------------------------------------------- why a case matched

// A white-background sketch as coloured ink on transparency, to lay over the photo.
async function inkOverlay(url, [r, g, b]) {
  const image = new Image();
  image.src = url;
  await image.decode();
  const c = document.createElement("canvas");
  c.width = image.naturalWidth;
  c.height = image.naturalHeight;
  const cx = c.getContext("2d");
  cx.drawImage(image, 0, 0);
  const pixels = cx.getImageData(0, 0, c.width, c.height);
  const d = pixels.data;
  for (let i = 0; i < d.length; i += 4) {
    const ink = 255 - (d[i] + d[i + 1] + d[i + 2]) / 3;
    d[i] = r; d[i + 1] = g; d[i + 2] = b; d[i + 3] = Math.min(255, ink * 1.6);
  }
  cx.putImageData(pixels, 0, 0);
  return c.toDataURL("image/png");
}

let detailHit = null;

function overlayToggle(box, img) {
  img.hidden = !box.checked || !img.src;
}

async function openDetail(hit) {
  detailHit = hit;
  const dialog = $("detail");
  $("detail-title").textContent = `Case ${hit.image_id} (rank ${hit.rank}): ${similarityText(hit)}`;
  const fields = $("detail-fields");
  fields.replaceChildren();
  const rows = [
    ["case", hit.case_id], ["diagnosis", hit.diagnosis], ["findings", (hit.findings || []).join(", ") || "none"],
    ["study date", hit.study_date], ["patient", hit.patient_pseudonym],
    ["score", hit.score.toFixed(3)], ...CHANNELS.map((c) => [c, hit.channels[c].toFixed(3)]),
    ["study UID", hit.study_uid], ["series UID", hit.series_uid], ["SOP UID", hit.sop_uid],
  ];
  for (const [name, value] of rows) {
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = name;
    dd.textContent = value == null ? "-" : String(value);
    fields.append(dt, dd);
  }
  const viewer = $("detail-viewer");
  viewer.hidden = !hit.viewer_url;
  if (hit.viewer_url) viewer.href = withQuery(hit.viewer_url);
  const query = $("detail-query"), caseSketch = $("detail-case-sketch");
  query.removeAttribute("src");
  caseSketch.removeAttribute("src");
  $("show-query").checked = Boolean(lastAnswer && lastAnswer.sketch_url);
  $("show-query").disabled = !(lastAnswer && lastAnswer.sketch_url);
  $("show-case-sketch").checked = true;
  $("detail-image").removeAttribute("src");
  dialog.dataset.ready = "false";
  if (!dialog.open) dialog.showModal();
  try {
    $("detail-image").src = await authImage(hit.image_url);
    if (lastAnswer && lastAnswer.sketch_url) query.src = await inkOverlay(await authImage(lastAnswer.sketch_url), [31, 111, 235]);
    try {
      caseSketch.src = await inkOverlay(await authImage(hit.sketch_url), [224, 123, 0]);
    } catch (error) {
      $("show-case-sketch").checked = false;
      $("show-case-sketch").disabled = true;
    }
  } catch (error) {
    showError(error);
  }
  overlayToggle($("show-query"), query);
  overlayToggle($("show-case-sketch"), caseSketch);
  dialog.dataset.ready = "true";
}

$("show-query").addEventListener("change", (e) => overlayToggle(e.target, $("detail-query")));
$("show-case-sketch").addEventListener("change", (e) => overlayToggle(e.target, $("detail-case-sketch")));

$("detail-similar").addEventListener("click", async () => {
  if (!detailHit) return;
  const hit = detailHit;
  $("detail").close();
  hideError();
  const k = Math.max(1, Math.min(100, parseInt($("k").value, 10) || 12));
  try {
    const answer = await callJson(`/v1/images/${hit.image_id}/similar`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ k, filters: filters() }),
    });
    await showResults(answer, `Cases like ${hit.image_id}`);
  } catch (error) { showError(error); }
});

redraw();
