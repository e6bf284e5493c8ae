// The pad's access to the service: the API key (this browser session only), calls that turn every failure
// into one readable sentence, and images fetched with the key. Loaded first; the other scripts use it.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "s2m.apiKey"; // sessionStorage: kept for this browser session only

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
