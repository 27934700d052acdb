// GANPaint page: paint a mask at the generated image's resolution, send it to the server
// with "remove/add CONCEPT", show the edited image, the units used, and the downloads.
// No library, nothing loaded from elsewhere: it works offline.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const state = {
    info: null, seed: 0, W: 0, H: 0, mask: null, undo: [], tool: "paint", brush: 4,
    concept: null, lastEdit: null, lastImage: null, edits: 0, busy: false,
  };
  window.ganpaint = state;  // read by the browser test and handy in the console
  const canvas = $("mask");
  const ctx = canvas.getContext("2d");
  let jsonUrl = null;

  function setStatus(text, isError) {
    const el = $("status");
    el.textContent = text;
    el.classList.toggle("error", Boolean(isError));
  }

  async function api(path, body) {
    const options = body === undefined ? {} : {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
    };
    const response = await fetch(path, options);
    let data;
    try { data = await response.json(); } catch (e) { data = {}; }
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    return data;
  }

  // -- the mask ------------------------------------------------------------------------------
  function painted() {
    let n = 0;
    for (let i = 0; i < state.mask.length; i++) n += state.mask[i];
    return n;
  }

  function redraw() {
    const image = ctx.createImageData(state.W, state.H);
    for (let i = 0; i < state.mask.length; i++) {
      if (state.mask[i]) {
        image.data[4 * i] = 255; image.data[4 * i + 1] = 0;
        image.data[4 * i + 2] = 200; image.data[4 * i + 3] = 120;
      }
    }
    ctx.putImageData(image, 0, 0);
    const n = painted();
    $("painted").textContent = `${n} px painted`;
    $("undo").disabled = state.undo.length === 0;
    const ready = n > 0 && state.concept !== null && !state.busy;
    $("remove").disabled = !ready;
    $("add").disabled = !ready;
  }

  function stamp(x, y) {  // a disc of radius `brush` image pixels around (x, y)
    const r = state.brush, value = state.tool === "paint" ? 1 : 0;
    const y0 = Math.max(0, Math.floor(y - r)), y1 = Math.min(state.H - 1, Math.ceil(y + r));
    const x0 = Math.max(0, Math.floor(x - r)), x1 = Math.min(state.W - 1, Math.ceil(x + r));
    for (let py = y0; py <= y1; py++) {
      for (let px = x0; px <= x1; px++) {
        const dx = px + 0.5 - x, dy = py + 0.5 - y;
        if (dx * dx + dy * dy <= r * r) state.mask[py * state.W + px] = value;
      }
    }
  }

  function segment(a, b) {
    const steps = Math.max(1, Math.ceil(Math.hypot(b[0] - a[0], b[1] - a[1]) / 0.5));
    for (let i = 1; i <= steps; i++) {
      stamp(a[0] + (b[0] - a[0]) * i / steps, a[1] + (b[1] - a[1]) * i / steps);
    }
  }

  function toImage(event) {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * state.W / box.width,
            (event.clientY - box.top) * state.H / box.height];
  }

  let last = null;
  canvas.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 || !state.mask) return;
    event.preventDefault();
    state.undo.push(state.mask.slice());
    if (state.undo.length > 50) state.undo.shift();
    last = toImage(event);
    stamp(last[0], last[1]);
    canvas.setPointerCapture(event.pointerId);
    redraw();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (last === null) return;
    const point = toImage(event);
    segment(last, point);
    last = point;
    redraw();
  });
  const endStroke = () => { last = null; };
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);

  function rle() {  // row-major run lengths, starting with a run of unpainted pixels
    const runs = [];
    let current = 0, length = 0;
    for (let i = 0; i < state.mask.length; i++) {
      if (state.mask[i] !== current) { runs.push(length); current = state.mask[i]; length = 0; }
      length++;
    }
    runs.push(length);
    return runs;
  }

  // -- samples -------------------------------------------------------------------------------
  async function loadSample(seed) {
    setStatus("generating…");
    try {
      const data = await api(`/api/sample?seed=${encodeURIComponent(seed)}`);
      state.seed = data.seed;
      $("seed").value = String(data.seed);
      $("original").src = data.image;
      clearResult();
      setStatus(`seed ${data.seed}`);
    } catch (e) {
      setStatus(e.message, true);
    }
  }

  function clearResult() {
    $("result").hidden = true;
    $("placeholder").hidden = false;
    $("units").hidden = true;
    $("download-png").classList.add("disabled");
    $("download-json").classList.add("disabled");
    state.lastEdit = null;
  }

  // -- concepts and edits --------------------------------------------------------------------
  function selectConcept(concept) {
    state.concept = concept;
    $("k").value = String(Math.max(1, concept.k));  // the server's default k (docs/ganpaint.md)
    $("remove").textContent = `Remove ${concept.name}`;
    $("add").textContent = `Add ${concept.name}`;
    redraw();
  }

  function showConcepts(concepts) {
    const list = $("concepts");
    list.replaceChildren();
    if (!concepts.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = "No unit of this layer beats chance for any concept.";
      list.append(li);
    }
    concepts.forEach((concept, i) => {
      const li = document.createElement("li");
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "radio"; input.name = "concept"; input.value = concept.name;
      input.dataset.concept = concept.name;
      input.addEventListener("change", () => selectConcept(concept));
      const name = document.createElement("span");
      name.textContent = concept.name;
      const count = document.createElement("span");
      count.className = "count";
      count.textContent = `${concept.units} unit${concept.units === 1 ? "" : "s"} · k ${concept.k} · IoU ${concept.best_iou.toFixed(3)}`;
      count.title = `${concept.units} unit${concept.units === 1 ? "" : "s"} above chance; k defaults to ${concept.k}; best IoU ${concept.best_iou.toFixed(3)}`;
      label.append(input, name, count);
      li.append(label);
      list.append(li);
      if (i === 0) { input.checked = true; selectConcept(concept); }
    });
  }

  async function applyEdit(mode) {
    if (!state.concept || state.busy) return;
    const k = Number($("k").value);
    const body = {seed: state.seed, mode, concept: state.concept.name, k,
                  region: {size: [state.H, state.W], rle: rle()}};
    state.busy = true;
    redraw();
    const verb = mode === "ablate" ? "Removed" : "Added";
    const start = performance.now();
    try {
      const data = await api("/api/edit", body);
      const trip = performance.now() - start;
      state.lastEdit = data.edit;
      state.lastImage = data.image;
      state.edits += 1;
      const result = $("result");
      result.src = data.image;
      result.hidden = false;
      result.dataset.edits = String(state.edits);
      $("placeholder").hidden = true;
      showUnits(data.units);
      const stem = `ganpaint-seed${data.edit.seed}-${mode === "ablate" ? "remove" : "add"}-${data.edit.concept}`;
      const png = $("download-png");
      png.href = data.image; png.download = `${stem}.png`; png.classList.remove("disabled");
      if (jsonUrl) URL.revokeObjectURL(jsonUrl);
      jsonUrl = URL.createObjectURL(new Blob([JSON.stringify(data.edit, null, 1)],
                                             {type: "application/json"}));
      const json = $("download-json");
      json.href = jsonUrl; json.download = `${stem}.json`; json.classList.remove("disabled");
      setStatus(`${verb} ${data.edit.concept} with ${data.units.length} unit` +
                `${data.units.length === 1 ? "" : "s"} of ${data.edit.layer} ` +
                `(${Math.round(trip)} ms round trip)`);
    } catch (e) {
      setStatus(e.message, true);
    } finally {
      state.busy = false;
      redraw();
    }
  }

  function showUnits(units) {
    const body = $("units").querySelector("tbody");
    body.replaceChildren();
    for (const u of units) {
      const tr = document.createElement("tr");
      for (const text of [String(u.unit), u.iou.toFixed(3), u.label || "–", u.value.toPrecision(4)]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      }
      body.append(tr);
    }
    $("units").hidden = false;
  }

  // -- wiring --------------------------------------------------------------------------------
  function setTool(tool) {
    state.tool = tool;
    $("tool-paint").setAttribute("aria-pressed", String(tool === "paint"));
    $("tool-erase").setAttribute("aria-pressed", String(tool === "erase"));
  }

  async function init() {
    let info;
    try {
      info = await api("/api/info");
    } catch (e) {
      setStatus(`cannot reach the server: ${e.message}`, true);
      return;
    }
    state.info = info;
    [state.H, state.W] = info.image_size;
    canvas.width = state.W;
    canvas.height = state.H;
    state.mask = new Uint8Array(state.W * state.H);
    $("model").textContent = `${info.model} · run ${info.run} · segmenter ${info.segmenter}`;
    $("layer").textContent = info.layer;
    $("sizes").textContent = `image ${state.W}×${state.H} px · layer ${info.layer} ` +
      `${info.layer_size[1]}×${info.layer_size[0]} cells, ${info.num_units} units`;
    $("seed").max = String(info.seed_max);
    $("k").max = String(info.num_units);
    const brush = $("brush");
    brush.max = String(Math.max(2, Math.round(state.W / 4)));
    state.brush = Math.max(1, Math.round(state.W / 16));
    brush.value = String(state.brush);
    $("brush-size").textContent = String(state.brush);
    showConcepts(info.concepts);

    brush.addEventListener("input", () => {
      state.brush = Number(brush.value);
      $("brush-size").textContent = brush.value;
    });
    $("tool-paint").addEventListener("click", () => setTool("paint"));
    $("tool-erase").addEventListener("click", () => setTool("erase"));
    $("undo").addEventListener("click", () => {
      if (state.undo.length) { state.mask = state.undo.pop(); redraw(); }
    });
    $("clear").addEventListener("click", () => {
      state.undo.push(state.mask.slice());
      state.mask.fill(0);
      redraw();
    });
    $("new-sample").addEventListener("click", () => {
      loadSample(Math.floor(Math.random() * Math.min(info.seed_max, 2 ** 31)));
    });
    $("seed-form").addEventListener("submit", (event) => {
      event.preventDefault();
      loadSample($("seed").value.trim());
    });
    $("remove").addEventListener("click", () => applyEdit("ablate"));
    $("add").addEventListener("click", () => applyEdit("insert"));
    redraw();
    await loadSample(0);
    document.body.dataset.ready = "1";
  }

  init();
})();
