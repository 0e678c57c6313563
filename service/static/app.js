/**
 * The scribble page: open an image, paint a few strokes per class, segment through
 * POST /segment, follow the job, then show, refine and download the result. In live mode (on
 * by default) the page segments by itself once the strokes rest, each round refining the last.
 * Beside the brush, a box around an object and clicks on or off it (marks.js) name one object.
 *
 * Scribbles travel as a grey label PNG (png.js), not as strokes JSON: the label map painted
 * here (erasing, undo and clear included) is then exactly the one the server reads, pixel for
 * pixel, with no second rasteriser on the server that would have to agree with this one.
 */
import { ApiError, apiKey, getJson, jobEnd, jobEnded, request, serverSeconds, watchProgress } from "./api.js";
import { Marks, swapObject } from "./marks.js";
import { decodeGreyPng, encodeGreyPng } from "./png.js";

// Colours handed out as classes are added; each can be changed with its colour input.
const COLOURS = ["#3b6ef5", "#f5a623", "#19b27b", "#e5484d", "#8e4ec6", "#e93d82", "#12a594", "#8db600", "#f76b15", "#0090ff"];
const FIRST_CLASSES = ["background", "foreground"];
const ZOOM_STEP = 1.25;
const TOOL_KEYS = { b: "brush", e: "eraser", r: "box", c: "click" };
const CLICK_RADIUS_PX = 5; // a click's dot on screen, whatever the zoom
// Live mode segments this long after the last edit, so strokes painted in quick succession make one job.
const LIVE_DELAY_MS = 150;
// The Example button's photo and scribbles, served with the page: scikit-image's coffee photo (CC0) and the README's
// scribbles of three classes (docs/example/make_example.py).
const EXAMPLE = {
  image: "static/example/coffee.jpg",
  scribbles: "static/example/coffee-scribbles.png",
  classes: ["table", "cup and saucer", "coffee"],
};

const $ = (id) => document.getElementById(id);
const stage = $("stage");
const layers = $("layers");
const imageLayer = $("image-layer");
const resultLayer = $("result-layer");
const scribbleLayer = $("scribble-layer");
const promptLayer = $("prompt-layer");

const state = {
  file: null, // the image as chosen; sent as is, so the server reads it (and its EXIF) itself
  marks: null, // Marks: the scribbles and prompts, with their undo history
  labels: null, // marks.labels, the scribbles' LabelMap
  classes: FIRST_CLASSES.map((name, i) => ({ value: i + 1, name, colour: COLOURS[i] })),
  active: 2, // the first foreground class: a first stroke usually marks the object
  zoom: 1,
  fitted: true, // keep fitting the image to the stage as the window changes
  lastPoint: null,
  drag: null, // the box being dragged: { from (its first corner), box (null until it spans a pixel) }
  options: null, // GET /options: the server's defaults and limits
  running: null, // the round being followed: { controller, job (once accepted), classes }
  liveTimer: null,
  job: null, // the job whose result is shown: the next round refines it
  prompted: false, // whether that job had prompts, so its classes 1 and 2 are the API's (marks.js)
  result: null, // its mask values
  uncertainty: null, // its uncertainty map, fetched when first shown
};

// ---- messages ----------------------------------------------------------------------------

function setStatus(text) {
  $("status").textContent = text;
}

/** Show an error in the API's own words; a 401 also points at the key field. */
function showError(error) {
  $("error").textContent = error.message ?? String(error);
  if (error instanceof ApiError && error.status === 401) {
    $("api-key").classList.add("needed");
    $("api-key").focus();
  }
}

function clearError() {
  $("error").textContent = "";
}

// ---- drawing label maps --------------------------------------------------------------------

function rgb(hex) {
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

/** RGBA of each label value as one 32-bit word, so a pixel is one store; 0 stays transparent. */
function colourTable() {
  const bytes = new Uint8ClampedArray(256 * 4);
  for (const { value, colour } of state.classes) bytes.set([...rgb(colour), 255], 4 * value);
  return new Uint32Array(bytes.buffer);
}

/** Draw `values` (one label per pixel of `canvas`) in the class colours, within `region`. */
function drawLabels(canvas, values, region = { x0: 0, y0: 0, x1: canvas.width, y1: canvas.height }) {
  const table = colourTable();
  const [width, height] = [region.x1 - region.x0, region.y1 - region.y0];
  const pixels = new ImageData(width, height);
  const words = new Uint32Array(pixels.data.buffer);
  for (let y = 0; y < height; y++) {
    const row = (region.y0 + y) * canvas.width + region.x0;
    for (let x = 0; x < width; x++) words[y * width + x] = table[values[row + x]];
  }
  canvas.getContext("2d").putImageData(pixels, region.x0, region.y0);
}

function drawResult() {
  const context = resultLayer.getContext("2d");
  context.clearRect(0, 0, resultLayer.width, resultLayer.height);
  const uncertain = $("show-uncertainty").checked && state.uncertainty;
  if (uncertain) context.drawImage(state.uncertainty, 0, 0);
  else if (state.result) drawLabels(resultLayer, state.result);
  const shown = uncertain ? "uncertainty, brighter where less sure" : state.result ? "the class of every pixel" : "none yet";
  resultLayer.setAttribute("aria-label", `Result: ${shown}`);
}

function redraw() {
  if (!state.labels) return;
  drawLabels(scribbleLayer, state.labels.values);
  drawResult();
}

function svg(name, attributes) {
  const element = document.createElementNS("http://www.w3.org/2000/svg", name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  return element;
}

/**
 * Draw the box (the one being dragged, if any) and the clicks. Placed in percent of the image,
 * so zooming only stretches the layer, while outlines and dots keep their size on screen.
 */
function drawPrompts() {
  const { width, height } = state.labels;
  const { box: kept, points } = state.marks.prompts;
  const box = state.drag?.box ?? kept;
  const [across, down] = [(x) => `${(100 * x) / width}%`, (y) => `${(100 * y) / height}%`];
  const shapes = points.map(([x, y, label]) =>
    svg("circle", { class: label ? "on-object" : "off-object", cx: across(x + 0.5), cy: down(y + 0.5), r: CLICK_RADIUS_PX }),
  );
  if (box) {
    const { x0, y0, x1, y1 } = box;
    shapes.unshift(svg("rect", { class: "box", x: across(x0), y: down(y0), width: across(x1 - x0), height: down(y1 - y0) }));
  }
  promptLayer.replaceChildren(...shapes);
  const on = points.filter(([, , label]) => label).length;
  const said = [
    box && `a box from ${box.x0},${box.y0} to ${box.x1},${box.y1}`,
    points.length && `${on} clicks on the object, ${points.length - on} off it`,
  ];
  promptLayer.setAttribute("aria-label", `Prompts: ${said.filter(Boolean).join("; ") || "none"}`);
}

// ---- controls ------------------------------------------------------------------------------

function updateControls() {
  const { labels, running, result, options } = state;
  $("segment").disabled = !labels || Boolean(running);
  $("cancel").hidden = !running?.job; // cancelable once the service has accepted the job
  $("progress").hidden = !running;
  $("undo").disabled = !state.marks?.canUndo;
  $("redo").disabled = !state.marks?.canRedo;
  $("clear").disabled = !labels;
  $("add-class").disabled = !options || state.classes.length >= options.max_classes;
  for (const id of ["download-mask", "download-overlay", "show-uncertainty"]) $(id).disabled = !result;
  stage.classList.toggle("loaded", Boolean(labels));
}

function renderClasses() {
  const rows = state.classes.map((cls) => {
    const row = $("class-row").content.firstElementChild.cloneNode(true);
    const [pick, key, colour, name] = ["class-pick", "class-key", "class-colour", "class-name"].map((c) =>
      row.querySelector(`.${c}`),
    );
    const label = () => {
      pick.setAttribute("aria-label", `Paint ${cls.name}`);
      colour.setAttribute("aria-label", `Colour of ${cls.name}`);
    };
    pick.value = cls.value;
    pick.checked = cls.value === state.active;
    pick.addEventListener("change", () => (state.active = cls.value));
    key.textContent = cls.value <= 9 ? cls.value : "";
    colour.value = cls.colour;
    colour.addEventListener("input", () => {
      cls.colour = colour.value;
      redraw();
    });
    name.value = cls.name;
    name.setAttribute("aria-label", `Name of class ${cls.value}`);
    name.addEventListener("input", () => {
      cls.name = name.value;
      label();
    });
    label();
    return row;
  });
  $("classes").replaceChildren(...rows);
  updateControls();
}

function pickClass(value) {
  if (value > state.classes.length) return;
  state.active = value;
  document.querySelector(`.class-pick[value="${value}"]`).checked = true;
}

function addClass() {
  const value = state.classes.length + 1;
  // Class 1 is the background; each added class is another foreground: "foreground 2", "foreground 3", ...
  state.classes.push({ value, name: `foreground ${value - 1}`, colour: COLOURS[(value - 1) % COLOURS.length] });
  state.active = value;
  renderClasses();
  document.querySelector(`.class-pick[value="${value}"]`).focus();
}

/** The options form, built from the server's defaults, limits and descriptions (GET /options). */
function renderOptions() {
  const { fields, switches, choices } = state.options;
  const rows = Object.entries(fields).map(([name, field]) => {
    const input = Object.assign(document.createElement("input"), { id: `option-${name}`, name, type: "number" });
    input.value = field.default ?? "";
    input.step = field.integer ? "1" : "any";
    if (field.minimum != null) input.min = field.minimum;
    if (field.maximum != null) input.max = field.maximum;
    return optionRow(name, input);
  });
  for (const [name, on] of Object.entries(switches)) {
    rows.push(optionRow(name, Object.assign(document.createElement("input"), { id: `option-${name}`, name, type: "checkbox", checked: on })));
  }
  for (const [name, { choices: values, default: chosen }] of Object.entries(choices)) {
    const select = Object.assign(document.createElement("select"), { id: `option-${name}`, name });
    select.append(...values.map((value) => new Option(value, value, false, value === chosen)));
    rows.push(optionRow(name, select));
  }
  $("option-fields").replaceChildren(...rows);
}

/** A labelled row: the option's name in words ("refine stop loss"), its description on hover. */
function optionRow(name, control) {
  const label = Object.assign(document.createElement("label"), { htmlFor: control.id, textContent: name.replaceAll("_", " ") });
  label.title = control.title = state.options.descriptions[name] ?? "";
  const row = document.createElement("div");
  row.append(label, control);
  return row;
}

async function loadOptions() {
  try {
    state.options = await getJson("options");
  } catch (error) {
    showError(error);
    return;
  }
  clearError();
  $("api-key").classList.toggle("needed", state.options.auth_required && !apiKey.get());
  renderOptions();
  updateControls();
}

// ---- image and view --------------------------------------------------------------------------

async function openImage(file) {
  if (!file) return;
  let image;
  try {
    image = await createImageBitmap(file);
  } catch {
    showError(`this browser cannot display ${file.name || "the pasted image"}; open a PNG, JPEG or WebP image`);
    return;
  }
  clearError();
  const { width, height } = image;
  supersede();
  const marks = new Marks(width, height);
  Object.assign(state, { file, marks, labels: marks.labels, drag: null });
  clearResult();
  for (const canvas of [imageLayer, resultLayer, scribbleLayer]) Object.assign(canvas, { width, height });
  drawPrompts();
  imageLayer.getContext("2d").drawImage(image, 0, 0);
  image.close();
  setBrushSize(Math.round(Math.min(width, height) / 40));
  setStatus(`${file.name || "Pasted image"}: ${width}×${height}`);
  updateControls();
  fit();
}

/** Open the example photo with its scribbles, and segment it: a first mask in one click. */
async function openExample() {
  const [photo, scribbles] = await Promise.all(
    [EXAMPLE.image, EXAMPLE.scribbles].map(async (url) => (await request(url)).blob()),
  );
  await openImage(new File([photo], EXAMPLE.image.split("/").pop(), { type: photo.type }));
  const { values } = await decodeGreyPng(scribbles);
  state.classes = EXAMPLE.classes.map((name, i) => ({ value: i + 1, name, colour: COLOURS[i] }));
  renderClasses();
  for (const { value } of state.classes) state.marks.paintWhere(values, value);
  drawLabels(scribbleLayer, state.labels.values);
  await segment();
}

function setZoom(zoom, fitted = false) {
  if (!state.labels) return;
  Object.assign(state, { zoom: Math.min(Math.max(zoom, 0.05), 32), fitted });
  layers.style.width = `${state.labels.width * state.zoom}px`;
  layers.style.height = `${state.labels.height * state.zoom}px`;
  $("zoom-value").value = `${Math.round(state.zoom * 100)}%`;
}

function fit() {
  if (!state.labels) return;
  const margin = 32;
  const { clientWidth, clientHeight } = stage;
  setZoom(Math.min((clientWidth - margin) / state.labels.width, (clientHeight - margin) / state.labels.height), true);
}

// ---- painting ----------------------------------------------------------------------------

function brushSize() {
  return Number($("brush-size").value);
}

function setBrushSize(size) {
  $("brush-size").value = size;
  $("brush-size-value").value = $("brush-size").value; // as clamped by the slider
}

function tool() {
  return document.querySelector('input[name="tool"]:checked').value;
}

/** A pointer position in image pixels: canvases keep the image's size, CSS only scales them. */
function imagePoint(event) {
  const box = scribbleLayer.getBoundingClientRect();
  return [
    ((event.clientX - box.left) * state.labels.width) / box.width,
    ((event.clientY - box.top) * state.labels.height) / box.height,
  ];
}

function paintTo(point) {
  const region = state.labels.line(state.lastPoint, point, brushSize());
  if (region) drawLabels(scribbleLayer, state.labels.values, region);
  state.lastPoint = point;
}

/** The pixel under an image point, within the image. */
function pixelAt([x, y]) {
  const within = (value, size) => Math.min(Math.max(Math.floor(value), 0), size - 1);
  return [within(x, state.labels.width), within(y, state.labels.height)];
}

/** The box of whole pixels from corner a to corner b, both in it (x1, y1 excluded); null within one row or column. */
function boxBetween(a, b) {
  const [[ax, ay], [bx, by]] = [pixelAt(a), pixelAt(b)];
  const [x0, x1, y0, y1] = [Math.min(ax, bx), Math.max(ax, bx) + 1, Math.min(ay, by), Math.max(ay, by) + 1];
  return x1 - x0 > 1 && y1 - y0 > 1 ? { x0, y0, x1, y1 } : null;
}

/** A click: on the object with the main button, off it with Shift or the secondary button. */
function addClick(event) {
  if (event.button !== 0 && event.button !== 2) return;
  state.marks.addPoint(...pixelAt(imagePoint(event)), event.button === 0 && !event.shiftKey ? 1 : 0);
  drawPrompts();
  marksChanged();
}

function moveCursor(event) {
  const cursor = $("brush-cursor");
  cursor.hidden = tool() === "box" || tool() === "click"; // those mark a point, not a disc
  if (cursor.hidden) return;
  const [x, y] = imagePoint(event);
  const diameter = brushSize() * state.zoom;
  cursor.hidden = false;
  cursor.style.width = cursor.style.height = `${diameter}px`;
  cursor.style.left = `${(Math.floor(x) + 0.5) * state.zoom - diameter / 2}px`;
  cursor.style.top = `${(Math.floor(y) + 0.5) * state.zoom - diameter / 2}px`;
}

scribbleLayer.addEventListener("pointerdown", (event) => {
  if (!state.labels) return;
  if (tool() === "click") return addClick(event);
  if (event.button !== 0) return;
  clearTimeout(state.liveTimer); // live mode waits for this stroke or box too: a round never sends half of it
  scribbleLayer.setPointerCapture(event.pointerId);
  if (tool() === "box") {
    state.drag = { from: imagePoint(event), box: null };
    return;
  }
  state.labels.begin(tool() === "eraser" ? 0 : state.active);
  state.lastPoint = imagePoint(event);
  paintTo(state.lastPoint);
});

scribbleLayer.addEventListener("pointermove", (event) => {
  if (!state.labels) return;
  moveCursor(event);
  if (state.drag) {
    state.drag.box = boxBetween(state.drag.from, imagePoint(event));
    drawPrompts();
  }
  if (!state.labels.stroke) return;
  const coalesced = event.getCoalescedEvents?.() ?? [];
  for (const each of coalesced.length ? coalesced : [event]) paintTo(imagePoint(each));
});

for (const type of ["pointerup", "pointercancel"]) {
  scribbleLayer.addEventListener(type, () => {
    if (state.drag) {
      const { box } = state.drag;
      state.drag = null;
      if (box) state.marks.setBox(box); // a click with the box tool keeps the box there was
      drawPrompts();
    } else if (state.labels?.stroke) state.marks.endStroke();
    else return;
    marksChanged();
  });
}
scribbleLayer.addEventListener("pointerleave", () => ($("brush-cursor").hidden = true));
// The secondary button marks a click off the object, not a menu.
scribbleLayer.addEventListener("contextmenu", (event) => tool() === "click" && event.preventDefault());

function edit(change) {
  if (state.marks && change(state.marks)) {
    drawLabels(scribbleLayer, state.labels.values);
    drawPrompts();
    marksChanged();
  }
}

const undo = () => edit((marks) => marks.undo());
const redo = () => edit((marks) => marks.redo());

// ---- segmenting --------------------------------------------------------------------------

function clearResult() {
  Object.assign(state, { job: null, prompted: false, result: null, uncertainty: null });
  $("show-uncertainty").checked = false;
  drawResult();
}

function showProgress(job) {
  const { phase, step, total, fraction } = job.progress ?? {};
  $("progress").value = fraction ?? 0;
  if (job.status === "queued") setStatus(job.position ? `Queued, ${job.position} ahead` : "Queued");
  else if (job.status === "running") setStatus(phase ? `Running: ${phase} ${step}/${total}` : "Running");
}

/** After every edit of the marks: in live mode, segment once they rest for LIVE_DELAY_MS. */
function marksChanged() {
  updateControls();
  clearTimeout(state.liveTimer);
  if ($("live").checked && state.labels) state.liveTimer = setTimeout(guarded(segmentLive), LIVE_DELAY_MS);
}

async function segmentLive() {
  if (state.marks.classCount >= 2) return segment();
  supersede();
  setStatus(state.marks.prompted ? "Live: draw a box, or click off the object, to segment" : "Live: paint a second class to segment");
}

/**
 * Stop following the current round, if any: a newer edit made it stale. Its requests are
 * dropped and its job canceled, so the worker moves on to the newer one at its next step.
 */
function supersede() {
  const stale = state.running;
  if (!stale) return;
  state.running = null;
  stale.controller.abort();
  if (stale.job) discard(stale.job);
  updateControls();
}

/** Cancel (or, once ended, delete) a job nobody waits for; a failure leaves it to expire. */
function discard(job) {
  request(job.links.self, { method: "DELETE" }).catch(() => {});
}

/**
 * One round: submit the strokes so far, then wait for the mask (one long poll, progress
 * polled beside it only for jobs longer than a poll) and show it, unless a newer round
 * superseded this one meanwhile.
 */
async function segment() {
  supersede();
  clearError();
  const { classCount: classes, prompted } = state.marks;
  const running = { controller: new AbortController(), job: null, classes, prompted };
  const { signal } = running.controller;
  state.running = running;
  const current = () => state.running === running;
  updateControls();
  setStatus("Uploading");
  try {
    // Not abortable: an aborted POST may still have made a job, which nobody could then cancel.
    // A refine's head starts from the last job's classes, so a round that swaps them (marks.js) starts afresh.
    running.job = await submit(prompted === state.prompted ? state.job?.id : null);
    if (!current()) return discard(running.job);
    updateControls();
    const progress = new AbortController();
    watchProgress(running.job, showProgress, AbortSignal.any([signal, progress.signal]));
    const end = await jobEnd(running.job, signal).finally(() => progress.abort());
    if (current()) await showEnd(running, end);
  } catch (error) {
    if (!current()) return; // superseded: its aborted requests are no error
    setStatus("");
    showError(error);
  } finally {
    if (current()) {
      state.running = null;
      updateControls();
    }
  }
}

/**
 * POST /segment with all strokes, the box and all clicks so far. After a first result the job
 * refines it (`previous`): the image stays on the server and the head starts trained. Once that
 * job expired (410) the image goes up again and the job runs from scratch.
 */
async function submit(previous) {
  const { labels, prompted } = state.marks;
  const form = new FormData();
  if (previous) form.append("previous", previous);
  else form.append("image", state.file, state.file.name || "pasted.png");
  for (const [name, value] of Object.entries(state.marks.fields())) form.append(name, value);
  if (!prompted || labels.classCount > 0) {
    const values = prompted ? swapObject(labels.values) : labels.values;
    form.append("scribbles", await encodeGreyPng(labels.width, labels.height, values), "scribbles.png");
  }
  for (const control of $("option-fields").querySelectorAll("input, select")) {
    if (control.type === "checkbox") form.append(control.name, String(control.checked));
    else if (control.value !== "") form.append(control.name, control.value);
  }
  try {
    return await (await request("segment", { method: "POST", body: form })).json();
  } catch (error) {
    if (previous && error instanceof ApiError && error.status === 410) return submit(null);
    throw error;
  }
}

/** Show a round's end: its mask (`jobEnd`'s `mask`), or why there is none (`job`, failed or canceled). */
async function showEnd(running, { mask, job }) {
  if (job?.status === "failed") {
    setStatus("");
    showError(job.error?.message ?? "the segmentation failed");
    return;
  }
  if (job) {
    setStatus("Canceled");
    return;
  }
  const { values } = await decodeGreyPng(await mask.blob());
  if (state.running !== running) return;
  const result = running.prompted ? swapObject(values) : values;
  Object.assign(state, { job: running.job, prompted: running.prompted, result, uncertainty: null });
  await showUncertainty();
  const next = $("live").checked ? "Add strokes: the result follows." : "Add strokes and segment again to refine.";
  setStatus(`Done: ${running.classes} classes in ${serverSeconds(mask).toFixed(1)} s. ${next}`);
}

async function cancel() {
  const { job, controller } = state.running;
  state.running = null;
  controller.abort();
  updateControls();
  const answer = await (await request(job.links.self, { method: "DELETE" })).json();
  setStatus(answer.status === "canceled" ? "Canceled" : `The job had already ${answer.status}; canceling deleted it`);
}

/** Draw the result, fetching the uncertainty map the first time it is asked for. */
async function showUncertainty() {
  if ($("show-uncertainty").checked && !state.uncertainty) {
    await jobEnded(state.job); // the mask comes before the job has stored its uncertainty
    const blob = await (await request(state.job.links.uncertainty)).blob();
    state.uncertainty = await createImageBitmap(blob);
  }
  drawResult();
}

// ---- downloads ---------------------------------------------------------------------------

function save(blob, filename) {
  const link = Object.assign(document.createElement("a"), { href: URL.createObjectURL(blob), download: filename });
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

function stem() {
  return (state.file.name || "pasted").replace(/\.[^.]*$/, "");
}

/** The mask as shown, in the page's classes (a round with prompts has the API's 1 and 2 swapped). */
async function downloadMask() {
  save(await encodeGreyPng(state.labels.width, state.labels.height, state.result), `${stem()}-mask.png`);
}

/** The overlay as shown: the image with the result layer at the chosen opacity. */
async function downloadOverlay() {
  const canvas = new OffscreenCanvas(imageLayer.width, imageLayer.height);
  const context = canvas.getContext("2d");
  context.drawImage(imageLayer, 0, 0);
  context.globalAlpha = Number($("opacity").value);
  context.drawImage(resultLayer, 0, 0);
  save(await canvas.convertToBlob({ type: "image/png" }), `${stem()}-overlay.png`);
}

// ---- wiring ------------------------------------------------------------------------------

/** Run an async handler from an event, showing whatever it throws. */
const guarded = (handler) => (event) => handler(event).catch(showError);

$("open-image").addEventListener("click", () => $("image-file").click());
$("open-example").addEventListener("click", guarded(openExample));
$("image-file").addEventListener("change", guarded(async (event) => openImage(event.target.files[0])));
stage.addEventListener("dragover", (event) => {
  event.preventDefault();
  stage.classList.add("dropping");
});
stage.addEventListener("dragleave", () => stage.classList.remove("dropping"));
stage.addEventListener(
  "drop",
  guarded(async (event) => {
    event.preventDefault();
    stage.classList.remove("dropping");
    await openImage(event.dataTransfer.files[0]);
  }),
);
document.addEventListener(
  "paste",
  guarded(async (event) => {
    const file = [...event.clipboardData.files].find((f) => f.type.startsWith("image/"));
    if (file) await openImage(file);
  }),
);

$("add-class").addEventListener("click", addClass);
$("brush-size").addEventListener("input", () => setBrushSize(brushSize()));
$("undo").addEventListener("click", undo);
$("redo").addEventListener("click", redo);
$("clear").addEventListener("click", () => edit((marks) => marks.clear()));
$("segment").addEventListener("click", guarded(segment));
$("cancel").addEventListener("click", guarded(cancel));
$("live").addEventListener("change", marksChanged);
const showOpacity = () => (resultLayer.style.opacity = $("opacity").value);
$("opacity").addEventListener("input", showOpacity);
$("show-uncertainty").addEventListener("change", guarded(showUncertainty));
// Hidden by opacity, not visibility, so the layer still takes the pointer.
$("show-scribbles").addEventListener("change", () => (scribbleLayer.style.opacity = $("show-scribbles").checked ? "" : "0"));
$("download-mask").addEventListener("click", guarded(downloadMask));
$("download-overlay").addEventListener("click", guarded(downloadOverlay));
$("zoom-in").addEventListener("click", () => setZoom(state.zoom * ZOOM_STEP));
$("zoom-out").addEventListener("click", () => setZoom(state.zoom / ZOOM_STEP));
$("zoom-fit").addEventListener("click", fit);
stage.addEventListener(
  "wheel",
  (event) => {
    if (!event.ctrlKey || !state.labels) return;
    event.preventDefault();
    setZoom(state.zoom * (event.deltaY < 0 ? ZOOM_STEP : 1 / ZOOM_STEP));
  },
  { passive: false },
);
window.addEventListener("resize", () => state.fitted && fit());

$("api-key").value = apiKey.get();
$("api-key").addEventListener("change", () => {
  apiKey.set($("api-key").value.trim());
  $("api-key").classList.remove("needed");
  loadOptions();
});

// Shortcuts, except while typing in a field (where Ctrl+Z is the field's own undo).
document.addEventListener("keydown", (event) => {
  if (event.target.matches('input[type="text"], input[type="password"], input[type="number"], select')) return;
  const key = event.key.toLowerCase();
  const command = event.ctrlKey || event.metaKey;
  if (command && key === "z") (event.shiftKey ? redo : undo)();
  else if (command && key === "y") redo();
  else if (command || event.altKey) return;
  else if (Object.hasOwn(TOOL_KEYS, key)) document.querySelector(`input[name="tool"][value="${TOOL_KEYS[key]}"]`).checked = true;
  else if (key === "[" || key === "]") setBrushSize(brushSize() + (key === "]" ? 1 : -1));
  else if (/^[1-9]$/.test(key)) pickClass(Number(key));
  else return;
  event.preventDefault();
});

showOpacity();
renderClasses();
loadOptions();
