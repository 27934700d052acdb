/* ndcore report: sorting and filtering of the unit cards of a layer page (no dependencies).
   The state lives in the URL fragment (#sort=iou-asc&q=disk&cat=object&det=1), so a view can
   be bookmarked, and tests can drive the page from its URL. */
(function () {
  "use strict";
  var list = document.getElementById("units");
  if (!list) { return; }
  var controls = {
    q: document.getElementById("q"), cat: document.getElementById("cat"),
    det: document.getElementById("det"), sort: document.getElementById("sort")
  };
  var shown = document.getElementById("shown");
  var rows = Array.prototype.map.call(list.querySelectorAll(".card"), function (el) {
    return {
      el: el, unit: Number(el.dataset.unit), iou: Number(el.dataset.iou),
      label: el.dataset.label, category: el.dataset.category,
      detector: el.dataset.detector === "1", text: el.dataset.search.toLowerCase()
    };
  });
  function byText(key) {
    return function (a, b) { return a[key].localeCompare(b[key]) || b.iou - a.iou || a.unit - b.unit; };
  }
  var sorters = {
    "iou-desc": function (a, b) { return b.iou - a.iou || a.unit - b.unit; },
    "iou-asc": function (a, b) { return a.iou - b.iou || a.unit - b.unit; },
    "unit": function (a, b) { return a.unit - b.unit; },
    "label": byText("label"),
    "category": byText("category")
  };
  function matches(row, terms, cat, det) {
    if (det && !row.detector) { return false; }
    if (cat && row.category !== cat) { return false; }
    return terms.every(function (t) {
      // A number matches the unit exactly; any other term is a substring of the card's text.
      return /^\d+$/.test(t) ? row.unit === Number(t) : row.text.indexOf(t) >= 0;
    });
  }
  function state() {
    return { q: controls.q.value.trim(), cat: controls.cat.value,
             det: controls.det.checked ? "1" : "", sort: controls.sort.value };
  }
  function apply(writeHash) {
    var s = state();
    var terms = s.q.toLowerCase().split(/\s+/).filter(Boolean);
    var visible = 0;
    rows.slice().sort(sorters[s.sort] || sorters["iou-desc"]).forEach(function (row) {
      row.el.hidden = !matches(row, terms, s.cat, s.det === "1");
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
  function readHash() {
    var params = new URLSearchParams(location.hash.replace(/^#/, ""));
    if (params.has("q")) { controls.q.value = params.get("q"); }
    if (params.has("cat")) { controls.cat.value = params.get("cat"); }
    if (params.has("det")) { controls.det.checked = params.get("det") === "1"; }
    if (params.has("sort") && sorters[params.get("sort")]) { controls.sort.value = params.get("sort"); }
  }
  readHash();
  apply(false);
  document.body.setAttribute("data-ready", "1");
  controls.q.addEventListener("input", function () { apply(true); });
  [controls.cat, controls.det, controls.sort].forEach(function (c) {
    c.addEventListener("change", function () { apply(true); });
  });
  window.addEventListener("hashchange", function () { readHash(); apply(false); });
}());
