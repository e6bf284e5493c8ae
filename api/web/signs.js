// The Signs panel (issue 38): a control per clinical sign the bundle knows (off / present / absent, and
// a strength slider within the range the service gives, below 0 for a sign the clinician ruled out), the generated picture with the signs applied
// (POST /v1/generate, redrawn a short pause after a sign moves or the drawing changes), the signs sent
// with every search (pad.js's searchSketch reads activeSigns), and the patient view: that picture
// alone, large, with the sliders. The patient view asks the service for pictures only (/v1/generate):
// no search, no case, no saved search, nothing of the archive.
"use strict";

const SIGN_PAUSE_MS = 300;
const signPanel = { timer: null, abort: null, pictureUrl: null, known: [] };

const inPatientView = () => document.body.classList.contains("patient");
const signLabel = (name) => name.replace(/_/g, " ");
// An applied sign in words: "exudate 0.70", or "no erythema (1.00)" for one said absent.
const signSaid = (s) => (s.strength < 0 ? `no ${signLabel(s.sign)} (${(-s.strength).toFixed(2)})` : `${signLabel(s.sign)} ${s.strength.toFixed(2)}`);

// {sign: strength} of the signs switched on (what a search and a generated picture apply).
function activeSigns() {
  const asked = {};
  for (const row of document.querySelectorAll("#signs-list .sign")) {
    if (row.querySelector(".sign-on").checked) asked[row.dataset.sign] = Number(row.querySelector(".sign-strength").value);
  }
  return asked;
}

function signRow(sign) {
  const row = document.createElement("li");
  row.className = "sign";
  row.dataset.sign = sign.name;
  const toggle = document.createElement("label");
  const on = document.createElement("input");
  on.type = "checkbox";
  on.className = "sign-on";
  toggle.append(on, document.createTextNode(` ${signLabel(sign.name)}`));
  const slider = document.createElement("input");
  Object.assign(slider, { type: "range", className: "sign-strength", min: String(sign.min), max: String(sign.max),
                          step: String((sign.max - sign.min) / 40), value: String(sign.present), disabled: true });
  slider.setAttribute("aria-label", `${signLabel(sign.name)} strength`);
  const shown = document.createElement("output");
  shown.className = "sign-value";
  const say = () => {
    const value = Number(slider.value);
    shown.textContent = !on.checked ? "off" : value < 0 ? `absent ${(-value).toFixed(2)}` : value.toFixed(2);
  };
  const absent = document.createElement("button");
  Object.assign(absent, { type: "button", className: "sign-absent", textContent: "absent" });
  absent.setAttribute("aria-label", `${signLabel(sign.name)} absent`);
  on.addEventListener("change", () => {
    slider.disabled = !on.checked;
    if (on.checked) slider.value = String(sign.present); // "present": the strength chosen on validation
    say();
    scheduleSignPicture();
  });
  absent.addEventListener("click", () => { // "absent": minus the strength chosen on validation for it
    on.checked = true;
    slider.disabled = false;
    slider.value = String(sign.absent);
    say();
    scheduleSignPicture();
  });
  slider.addEventListener("input", () => { say(); scheduleSignPicture(); });
  say();
  row.append(toggle, absent, slider, shown);
  return row;
}

async function loadSigns() {
  if (!apiKey()) return;
  const answer = await callJson("/v1/signs");
  signPanel.known = answer.signs;
  $("signs-list").replaceChildren(...answer.signs.map(signRow));
  $("signs-note").textContent = answer.signs.length === 0
    ? "This model has no sign directions (s2m train signs builds them)."
    : !answer.current ? "The sign directions were learned with another generator; the service refuses them."
    : answer.chosen_on_validation ? "'present' is the strength chosen on validation queries; slide to show more or less."
    : "Slide a sign to show more or less of it.";
  $("patient-toggle").disabled = answer.signs.length === 0;
}

function cancelSignPicture() {
  clearTimeout(signPanel.timer);
  if (signPanel.abort) signPanel.abort.abort();
  signPanel.abort = null;
}

function scheduleSignPicture() {
  if (!signPanel.known.length) return;
  cancelSignPicture();
  signPanel.timer = setTimeout(() => drawSignPicture().catch(showError), SIGN_PAUSE_MS);
}

// The sketch's picture with the active signs (x_T in the patient view, the quick x_0 beside the pad).
async function drawSignPicture() {
  if (!apiKey() || !hasInk()) { $("signs-state").textContent = hasInk() ? "(enter an API key)" : "(draw first)"; return; }
  const abort = new AbortController();
  signPanel.abort = abort;
  const form = new FormData();
  form.append("sketch", await sketchBlob(), "sketch.png");
  form.append("refine", inPatientView() ? "true" : "false");
  form.append("signs", JSON.stringify(activeSigns()));
  $("signs-state").textContent = "…";
  try {
    const response = await call("/v1/generate", { method: "POST", body: form, signal: abort.signal });
    const picture = await response.blob();
    if (abort.signal.aborted) return;
    if (signPanel.pictureUrl) URL.revokeObjectURL(signPanel.pictureUrl);
    signPanel.pictureUrl = URL.createObjectURL(picture);
    $("signs-picture").src = signPanel.pictureUrl;
    const applied = JSON.parse(response.headers.get("X-Signs-Applied") || "[]");
    $("signs-picture").dataset.signs = JSON.stringify(Object.fromEntries(applied.map((a) => [a.sign, a.strength])));
    $("signs-state").textContent = applied.length ? `(${applied.map(signSaid).join(", ")})` : "(no signs)";
    hideError();
  } catch (error) {
    if (error.name === "AbortError") return;
    $("signs-state").textContent = "";
    throw error;
  } finally {
    if (signPanel.abort === abort) signPanel.abort = null;
  }
}

// The patient view hides the pad, the results and the key; pending archive previews are dropped.
function setPatientView(on) {
  cancelPreview();
  document.body.classList.toggle("patient", on);
  $("patient-toggle").textContent = on ? "Leave patient view" : "Patient view";
  $("patient-toggle").setAttribute("aria-pressed", String(on));
  drawSignPicture().catch(showError);
}

// The results say which signs a search applied (a refined or reopened search keeps its first search's).
function signsText(signs) {
  return signs && signs.length ? ` with ${signs.map(signSaid).join(", ")}` : "";
}

$("patient-toggle").addEventListener("click", () => setPatientView(!inPatientView()));
$("key-form").addEventListener("submit", () => { loadSigns().catch(showError); });
loadSigns().catch(() => {});
