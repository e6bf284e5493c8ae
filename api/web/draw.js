// The pad's drawing surface: strokes with pen pressure, an eraser, uploaded pictures, undo and redo,
// and the drawing as the PNG the API reads. Loaded after api.js, before pad.js (whose preview it schedules).
"use strict";

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
