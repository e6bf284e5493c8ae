// Recent searches: the key's own latest searches (GET /v1/queries), each reopened with its ranked cases and,
// while the service keeps them, its sketch and generated pictures (GET /v1/queries/{id}); a search's link
// (?query=ID) reopens it when the pad loads. Loaded after pad.js (showResults) and loop.js.
"use strict";

const RECENT_LIMIT = 20;
const KIND_LABEL = { sketch: "sketch", example: "more like a case", refine: "refined", reopen: "reopened saved" };

const linkedQuery = () => new URLSearchParams(window.location.search).get("query")
  || (window.location.hash.match(/query=([0-9a-f]+)/) || [])[1] || null;

const when = (iso) => new Date(iso).toLocaleString([], { dateStyle: "short", timeStyle: "short" });

function filtersText(filters) {
  const parts = [];
  if (filters.diagnoses && filters.diagnoses.length) parts.push(filters.diagnoses.join(" or "));
  if (filters.findings && filters.findings.length) parts.push(`with ${filters.findings.join(", ")}`);
  const day = (iso) => (iso ? iso.slice(0, 10) : "…");
  if (filters.acquired_from || filters.acquired_to) parts.push(`${day(filters.acquired_from)} to ${day(filters.acquired_to)}`);
  if (filters.patients && filters.patients.length) parts.push(`${filters.patients.length} patients only`);
  if (filters.exclude_patients && filters.exclude_patients.length) parts.push(`${filters.exclude_patients.length} patients left out`);
  return parts.length ? parts.join("; ") : "no filters";
}

function recentItem(item) {
  const li = document.createElement("li");
  li.dataset.queryId = item.query_id;
  const thumb = document.createElement(item.sketch_url ? "img" : "span");
  thumb.className = "thumb";
  if (item.sketch_url) {
    thumb.alt = "the search's sketch";
    authImage(item.sketch_url).then((url) => { thumb.src = url; }).catch(() => {});
  } else {
    thumb.textContent = item.kind === "sketch" ? "sketch no longer kept" : KIND_LABEL[item.kind] || item.kind;
  }
  const open = document.createElement("button");
  open.type = "button";
  open.className = "reopen";
  open.textContent = `${when(item.created_at)} · ${KIND_LABEL[item.kind] || item.kind}${item.saved ? " · saved" : ""}`;
  open.title = "show this search's cases again";
  open.addEventListener("click", () => reopenQuery(item.query_id));
  const about = document.createElement("span");
  about.className = "muted about";
  const top = item.top.map((hit) => `#${hit.rank} case ${hit.image_id}`).join(", ");
  about.textContent = `${filtersText(item.filters)}${signsText(item.signs)}; top: ${top || "none"}`;
  const link = document.createElement("a");
  link.className = "link";
  link.href = `?query=${encodeURIComponent(item.query_id)}`;
  link.textContent = "link";
  link.title = "a link that reopens this search (for this API key only)";
  const text = document.createElement("div");
  text.append(open, about, link);
  li.append(thumb, text);
  return li;
}

async function listRecent() {
  const list = $("history-list");
  if (!apiKey()) { list.replaceChildren(); $("history-empty").hidden = false; return; }
  const recent = await callJson(`/v1/queries?limit=${RECENT_LIMIT}`);
  list.replaceChildren(...recent.map(recentItem));
  $("history-empty").hidden = recent.length > 0;
}

// A past search as a search answer for showResults: its logged ranking, its pictures while they are kept.
async function reopenQuery(queryId) {
  hideError();
  try {
    const past = await callJson(`/v1/queries/${encodeURIComponent(queryId)}`);
    await showResults({ ...past, timings_ms: {} }, `Search of ${when(past.created_at)}`);
  } catch (error) { showError(error); }
}

// After every answer the open list follows (a new search is on top).
function refreshRecent() {
  if ($("history").open) listRecent().catch(showError);
}

$("history").addEventListener("toggle", refreshRecent);

let pendingQuery = linkedQuery();
function openLinked() {
  if (!pendingQuery || !apiKey()) return;
  const queryId = pendingQuery;
  pendingQuery = null;
  reopenQuery(queryId);
}
$("key-form").addEventListener("submit", () => { refreshRecent(); openLinked(); });
if (pendingQuery && !apiKey()) $("results-hint").textContent = "Enter your API key to open the linked search.";
openLinked();
