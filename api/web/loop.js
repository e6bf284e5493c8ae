// The clinician's loop on the pad: mark hits "right" / "not this" and Refine (the same search moved
// by the marks), keep a search under a name and reopen it. Loaded after pad.js, whose showResults
// calls markButtons (on each card) and showLoop (once the cards are there).
"use strict";

const marks = new Map(); // image id -> "like" | "unlike", for the results shown

function markButtons(hit) {
  const row = document.createElement("div");
  row.className = "marks";
  for (const [mark, label] of [["like", "right"], ["unlike", "not this"]]) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = `mark ${mark}`;
    button.textContent = label;
    button.setAttribute("aria-pressed", "false");
    button.addEventListener("click", (event) => {
      event.stopPropagation();
      setMark(hit.image_id, marks.get(hit.image_id) === mark ? null : mark);
    });
    row.append(button);
  }
  row.addEventListener("keydown", (event) => event.stopPropagation());
  return row;
}

function setMark(imageId, mark) {
  if (mark) marks.set(imageId, mark); else marks.delete(imageId);
  const card = document.querySelector(`#grid .hit[data-image-id="${imageId}"]`);
  if (card) {
    card.dataset.mark = mark || "";
    for (const button of card.querySelectorAll("button.mark")) {
      button.setAttribute("aria-pressed", String(Boolean(mark) && button.classList.contains(mark)));
    }
  }
  showMarks();
}

function showMarks() {
  const like = [...marks.values()].filter((mark) => mark === "like").length;
  $("refine-search").disabled = marks.size === 0;
  $("marks-state").textContent = marks.size ? `${like} right, ${marks.size - like} not this` : "mark cases right or not this, then Refine";
}

// A hit's link into the service's own viewer carries the query, so the viewer's study list is its matches.
function withQuery(url) {
  if (!url.startsWith("/viewer?") || !lastAnswer) return url;
  return `${url}&query=${encodeURIComponent(lastAnswer.query_id)}`;
}

// After each answer: the marks start afresh; a refine says what changed, a reopened search what it found.
function showLoop(answer, previous) {
  marks.clear();
  $("loop-bar").hidden = false;
  const served = answer.results.some((hit) => (hit.viewer_url || "").startsWith("/viewer?"));
  $("results-viewer").hidden = !served;  // the service's own viewer (s2m serve --viewer-port): the query's worklist
  $("results-viewer").href = `/viewer/results/${encodeURIComponent(answer.query_id)}`;
  showMarks();
  const notes = [];
  if (answer.refinements && previous && previous.query_id === answer.parent_query_id) {
    const before = new Set(previous.results.map((hit) => hit.image_id));
    const now = new Set(answer.results.map((hit) => hit.image_id));
    const added = answer.results.filter((hit) => !before.has(hit.image_id));
    const gone = previous.results.filter((hit) => !now.has(hit.image_id)).length;
    for (const hit of added) document.querySelector(`#grid .hit[data-image-id="${hit.image_id}"]`).classList.add("new");
    const weights = Object.entries(answer.weights).map(([name, value]) => `${name} ${value.toFixed(2)}`).join(", ");
    notes.push(`Refined (round ${answer.refinements.length - 1}): ${added.length} new cases, ${gone} gone; channel weights now ${weights}.`);
  }
  if (answer.note) notes.push(answer.note);
  if (answer.percentiles_note) notes.push(answer.percentiles_note);
  $("results-note").textContent = notes.join(" ");
  $("results-note").hidden = notes.length === 0;
}

$("refine-search").addEventListener("click", async () => {
  if (!lastAnswer || !marks.size) return;
  const picked = (wanted) => [...marks].filter(([, mark]) => mark === wanted).map(([id]) => id);
  hideError();
  $("refine-search").disabled = true;
  try {
    const answer = await callJson(`/v1/queries/${lastAnswer.query_id}/refine`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ like: picked("like"), unlike: picked("unlike") }),
    });
    await showResults(answer, "Refined results");
  } catch (error) {
    showMarks();
    showError(error);
  }
});

// ---------------------------------------------------------------- saved searches

$("save-search").addEventListener("click", async () => {
  const name = $("save-name").value.trim();
  if (!lastAnswer) return;
  if (!name) { showError(new Error("Give the search a name to save it under.")); return; }
  try {
    await callJson(`/v1/queries/${lastAnswer.query_id}/save`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ name }),
    });
    $("save-name").value = "";
    await listSaved();
  } catch (error) { showError(error); }
});

async function listSaved() {
  const list = $("saved-list");
  if (!apiKey()) { list.replaceChildren(); $("saved-empty").hidden = false; return; }
  const saved = await callJson("/v1/saved");
  list.replaceChildren();
  $("saved-empty").hidden = saved.length > 0;
  for (const item of saved) {
    const li = document.createElement("li");
    li.dataset.savedId = String(item.saved_id);
    const open = document.createElement("button");
    open.type = "button";
    open.className = "reopen";
    open.textContent = item.name;
    open.title = `searched ${item.searched_at.slice(0, 16).replace("T", " ")}, top cases ${item.top_ids.join(", ")}`;
    open.addEventListener("click", () => reopen(item));
    const forget = document.createElement("button");
    forget.type = "button";
    forget.className = "forget";
    forget.textContent = "×";
    forget.setAttribute("aria-label", `forget ${item.name}`);
    forget.addEventListener("click", async () => {
      try { await call(`/v1/saved/${item.saved_id}`, { method: "DELETE" }); await listSaved(); } catch (error) { showError(error); }
    });
    const when = document.createElement("span");
    when.className = "muted";
    when.textContent = ` ${item.searched_at.slice(0, 10)}`;
    li.append(open, when, forget);
    list.append(li);
  }
}

async function reopen(item) {
  hideError();
  try {
    const answer = await callJson(`/v1/saved/${item.saved_id}`);
    await showResults(answer, `Saved search "${item.name}"`);
  } catch (error) { showError(error); }
}

$("key-form").addEventListener("submit", () => { listSaved().catch(showError); });
listSaved().catch(() => {});
