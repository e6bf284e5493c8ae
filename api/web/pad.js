// The sketch pad: preview x_0 after a pause, search, inspect a case (api.js: the service; draw.js: the canvas).
// Plain script, no dependencies: everything the page needs is served by the app itself.
"use strict";

const PREVIEW_PAUSE_MS = 450;
const PREVIEW_K = 10;
const CHANNELS = ["appearance", "latent", "shape"];

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

// `preview`: the live preview's search (logged as such, kept out of the recent searches); `signal` cancels it.
async function searchSketch(k, refine, { preview = false, signal } = {}) {
  const form = new FormData();
  form.append("sketch", await sketchBlob(), "sketch.png");
  form.append("k", String(k));
  form.append("refine", refine ? "true" : "false");
  if (preview) form.append("preview", "true");
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
    const answer = await searchSketch(PREVIEW_K, false, { preview: true, signal: abort.signal });
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
  refreshRecent(); // history.js
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
