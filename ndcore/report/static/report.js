/* ndcore report: sorting and filtering of the unit cards of a layer page (no dependencies).
   The state lives in the URL fragment (#sort=iou-asc&q=disk&cat=object&det=1), so a view can
   be bookmarked, and tests can drive the page from its URL. Runs with chance and confidence
   statistics add #sig=1 (significant only), #stable=1 (stable labels only), #minstab=50
   (stability of at least 50%) and their sort orders; a page without them has no such
   controls, and the script leaves them out. */
(function () {
  "use strict";
  var list = document.getElementById("units");
  if (!list) { return; }
  var controls = {
    q: document.getElementById("q"), cat: document.getElementById("cat"),
    det: document.getElementById("det"), sig: document.getElementById("sig"),
    stable: document.getElementById("stable"), minstab: document.getElementById("minstab"),
    sort: document.getElementById("sort")
  };
  var present = Object.keys(controls).filter(function (k) { return controls[k]; });
  var stableAt = Number(list.dataset.stable || 1);
  var shown = document.getElementById("shown");
  function number(value) { return value === undefined ? null : Number(value); }
  var rows = Array.prototype.map.call(list.querySelectorAll(".card"), function (el) {
    var d = el.dataset;
    return {
      el: el, unit: Number(d.unit), iou: Number(d.iou),
      label: d.label, category: d.category,
      detector: d.detector === "1", text: d.search.toLowerCase(),
      // null where the run has no such statistic or the unit no label
      ciLow: number(d.ciLow), ciWidth: number(d.ciWidth), stability: number(d.stability),
      p: number(d.p), significant: d.significant === "1"
    };
  });
  function byText(key) {
    return function (a, b) { return a[key].localeCompare(b[key]) || b.iou - a.iou || a.unit - b.unit; };
  }
  function byNumber(key, sign) {
    // Units without the value go last, whatever the direction.
    return function (a, b) {
      if ((a[key] === null) !== (b[key] === null)) { return a[key] === null ? 1 : -1; }
      return sign * ((a[key] || 0) - (b[key] || 0)) || b.iou - a.iou || a.unit - b.unit;
    };
  }
  var sorters = {
    "iou-desc": function (a, b) { return b.iou - a.iou || a.unit - b.unit; },
    "iou-asc": function (a, b) { return a.iou - b.iou || a.unit - b.unit; },
    "ci-low-desc": byNumber("ciLow", -1),
    "ci-width-asc": byNumber("ciWidth", 1),
    "stability-desc": byNumber("stability", -1),
    "p-asc": byNumber("p", 1),
    "unit": function (a, b) { return a.unit - b.unit; },
    "label": byText("label"),
    "category": byText("category")
  };
  function matches(row, terms, s) {
    if (s.det && !row.detector) { return false; }
    if (s.sig && !row.significant) { return false; }
    var least = Math.max(s.stable ? stableAt : 0, s.minstab ? Number(s.minstab) / 100 : 0);
    if (least > 0 && !(row.stability !== null && row.stability >= least - 1e-9)) { return false; }
    if (s.cat && row.category !== s.cat) { return false; }
    return terms.every(function (t) {
      // A number matches the unit exactly; any other term is a substring of the card's text.
      return /^\d+$/.test(t) ? row.unit === Number(t) : row.text.indexOf(t) >= 0;
    });
  }
  function value(key) {
    var c = controls[key];
    if (!c) { return ""; }
    if (c.type === "checkbox") { return c.checked ? "1" : ""; }
    return key === "q" ? c.value.trim() : c.value;
  }
  function state() {
    var s = {};
    present.forEach(function (k) { s[k] = value(k); });
    if (s.minstab && !(Number(s.minstab) > 0)) { s.minstab = ""; }
    return s;
  }
  function apply(writeHash) {
    var s = state();
    var terms = (s.q || "").toLowerCase().split(/\s+/).filter(Boolean);
    var visible = 0;
    rows.slice().sort(sorters[s.sort] || sorters["iou-desc"]).forEach(function (row) {
      row.el.hidden = !matches(row, terms, s);
      if (!row.el.hidden) { visible += 1; }
      list.appendChild(row.el);
    });
    shown.textContent = visible + " of " + rows.length + " units shown";
    if (writeHash) {
      var params = new URLSearchParams();
      Object.keys(s).forEach(function (k) { if (s[k] && !(k === "sort" && s[k] === "iou-desc")) { params.set(k, s[k]); } });
      try { history.replaceState(null, "", "#" + params.toString()); } catch (e) { /* file:// may refuse */ }
    }
  }
  function hasOption(select, v) {
    return Array.prototype.some.call(select.options, function (o) { return o.value === v; });
  }
  function readHash() {
    var params = new URLSearchParams(location.hash.replace(/^#/, ""));
    present.forEach(function (k) {
      if (!params.has(k)) { return; }
      var c = controls[k], v = params.get(k);
      if (c.type === "checkbox") { c.checked = v === "1"; }
      else if (c.tagName === "SELECT") { if (hasOption(c, v)) { c.value = v; } }
      else { c.value = v; }
    });
  }
  readHash();
  apply(false);
  document.body.setAttribute("data-ready", "1");
  present.forEach(function (k) {
    controls[k].addEventListener(k === "q" || k === "minstab" ? "input" : "change",
                                 function () { apply(true); });
  });
  window.addEventListener("hashchange", function () { readHash(); apply(false); });
}());
