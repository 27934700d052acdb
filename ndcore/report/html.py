"""The HTML report of a run: an index page and one page per layer, from saved results only.

Pages are self-contained (CSS and JS embedded, charts inline SVG, strips as relative image
files), so the report works from file:// and fetches nothing from the network. Jinja2 runs
with autoescaping on: every label, file and layer name reaches the page as text.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from ..conventions import STABLE_LABEL
from ..errors import OutputError
from ..figures import charts
from ..figures.charts import category_colors
from ..formulas.output import formulas_by_unit
from ..progress import progress_bar
from ..results import DissectionResult, LayerResult, iou_curves, layer_dir
from ..results.thumbnails import FOLDER as THUMBNAILS, image_sources
from ..version import __version__
from .common import check_cutoff, check_fdr, check_positive, layer_slugs, rotation_curves
from .strips import StripRenderer

log = logging.getLogger(__name__)

HERE = Path(__file__).parent


@lru_cache(maxsize=1)
def environment() -> Environment:
    return Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


@lru_cache(maxsize=None)
def _static(name: str) -> Markup:
    # Our own files, embedded verbatim; no data ever goes into them.
    return Markup((HERE / "static" / name).read_text())


def _render(template: str, path: Path, **context) -> None:
    html = environment().get_template(template).render(
        css=_static("report.css"), version=__version__, **context)
    path.write_text(html, encoding="utf-8")


def concept_groups(lr: LayerResult) -> List[Tuple[str, List[Tuple[str, int]]]]:
    """(category, [(label, detector units)]) by category order, most frequent label first."""
    groups = []
    for cat in lr.vocabulary.categories:
        counts: Dict[str, int] = {}
        for u in lr.detectors():
            if u.category == cat:
                counts[u.label] = counts.get(u.label, 0) + 1
        groups.append((cat, sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))))
    return groups


def mask_thresholds(lr: LayerResult):
    """The threshold each unit's strip masks use: its own, or under the best-IoU rule the one
    of its label."""
    if lr.best_thresholds is None:
        return lr.thresholds
    out = lr.thresholds.astype("float32").copy()
    for u in lr.units:
        if u.label_number > 0:
            out[u.unit] = lr.best_thresholds[u.unit, u.label_number]
    return out


def unit_curves(lr: LayerResult) -> Dict[int, Markup]:
    """Per unit, its IoU-vs-threshold curve for its label (runs that kept IoU histograms)."""
    if "hist" not in lr.counts:
        return {}
    curves = iou_curves(lr.counts, lr.vocabulary, lr.full_vocabulary or lr.vocabulary)
    out = {}
    for u in lr.units:
        if u.label_number > 0:
            out[u.unit] = charts.iou_curve(curves["edges"][u.unit],
                                           curves["iou"][u.unit, u.label_number], u.label)
    return out


def format_p(p: float) -> str:
    """A p-value in two significant digits; one too small for a float reads as a bound."""
    return "< 1e-300" if p < 1e-300 else f"{p:.2g}"


def percent(share: float) -> str:
    """0.05 -> '5%', 0.925 -> '92.5%'."""
    return f"{100 * share:.3g}%"


def unit_statistics(stats: Dict[str, Any]) -> Dict[str, Any]:
    """A card's chance and confidence (from :attr:`UnitResult.stats`): None where the run did
    not compute one, or where it is undefined (a unit without a label has no interval)."""
    ci = stats.get("iou_ci")
    p = stats.get("p_value")
    return {
        "ci": tuple(ci) if ci is not None else None,
        "stability": stats.get("label_stability"),
        "stability_text": (percent(stats["label_stability"])
                           if stats.get("label_stability") is not None else None),
        "p": p, "p_text": format_p(p) if p is not None else None,
        "significant": stats.get("significant"),
        "chance": stats.get("null_iou95"),
    }


def layer_statistics(lr: LayerResult) -> Optional[Dict[str, Any]]:
    """What the layer page says about chance and confidence; None for a run without them."""
    sig = lr.significance
    if sig is None:
        return None
    return {"null": sig.significant is not None, "bootstrap": sig.label_stability is not None,
            "permutations": sig.permutations, "resamples": sig.bootstrap,
            "fdr": percent(sig.fdr), "stable": STABLE_LABEL, "stable_text": percent(STABLE_LABEL),
            "note": sig.note}


def layer_formulas(run_dir: Path, layer: str) -> Dict[int, Dict]:
    """{unit: its row of formulas.json} (``ndcore formulas``); {} when the layer has none. An
    unreadable file costs a warning, not the report."""
    try:
        return formulas_by_unit(run_dir, layer)
    except OutputError as e:
        log.warning("report: %s; the layer's formulas are left out", e)
        return {}


def unit_cards(lr: LayerResult, strips: Dict, colors: Dict[str, str],
               formulas: Optional[Dict[int, Dict]] = None) -> List[Dict]:
    cards = []
    curves = unit_curves(lr)
    formulas = formulas or {}
    for u in lr.units:
        others = [r for r in u.ranked if (r["label"], r["category"]) != (u.label, u.category)][:4]
        formula = formulas.get(u.unit)
        search = f"unit {u.unit} {u.label} {u.category}"  # what the page's search box matches
        if formula:
            search += f" {formula['formula']}"
        cards.append({
            "unit": u.unit, "label": u.label, "category": u.category, "iou": u.iou,
            "detector": u.iou > lr.cutoff, "next": others, "search": search,
            "color": colors.get(u.category, "#888"), "strip": strips.get(u.unit),
            "curve": curves.get(u.unit), "formula": formula, **unit_statistics(u.stats),
        })
    cards.sort(key=lambda c: (-c["iou"], c["unit"]))  # the page's default order (IoU, high first)
    return cards


def _fmt(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value) if value else "-"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True) if value else "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return "-" if value is None or value == "" else str(value)


def model_input(model: Dict, dataset: Dict) -> Tuple[str, str]:
    """The config row saying what the model takes: a generator takes latents (no image
    preprocessing applies to it), a classifier preprocessed images."""
    if dataset.get("kind") == "generator":
        shape = dataset.get("latent_shape")
        return ("input", "latents z ~ N(0, I)" + (f" of shape {_fmt(shape)}" if shape else "")
                + f"; output range {_fmt(dataset.get('output_range'))}")
    pre = model.get("preprocess") or {}
    return ("preprocess", f"{pre.get('name', '-')}: mean {_fmt(pre.get('mean'))}, "
                          f"std {_fmt(pre.get('std'))}, resize {_fmt(pre.get('resize'))}")


def config_rows(config: Dict, result: DissectionResult) -> List[Tuple[str, List[Tuple[str, str]]]]:
    """The run's configuration as (section, [(key, text)]) for the index page."""
    model = config.get("model", {})
    dataset = config.get("dataset", {})
    first = next(iter(result.layers.values()), None)
    # where the run records its time (config["run"]); a top-level one from older runs
    elapsed = (config.get("run") or {}).get("elapsed_s", config.get("elapsed_s"))
    rows = [
        ("model", [("spec", model.get("spec")), ("description", model.get("description")),
                   ("weights", model.get("weights")),
                   ("weights sha256", model.get("weights_sha256"))]
         + ([("random init", "yes" if model["random_init"] else "no")]
            if "random_init" in model else [])
         + [model_input(model, dataset), ("layers", config.get("layers"))]),
        ("dataset", [(k, dataset.get(k)) for k in ("spec", "kind", "root", "images", "categories")]),
        ("options", sorted(config.get("options", {}).items())),
        ("this report", [("cut-off", first.cutoff if first else "-"),
                         ("union", first.union if first else "-"),
                         ("categories", result.vocabulary.categories)]
         + ([("false discovery rate", first.fdr)]
            if first is not None and first.significance is not None
            and first.significance.significant is not None else [])),
        ("versions", sorted(config.get("versions", {}).items())
         + [("elapsed (s)", elapsed)]),
    ]
    return [(section, [(k, _fmt(v)) for k, v in items]) for section, items in rows]


def footer_categories(categories: Sequence[str]) -> Optional[str]:
    """The --categories example of the footer, from the run's own categories: a subset (the
    first two of three or more, else the first of two); None for a one-category run."""
    if len(categories) < 2:
        return None
    return ",".join(categories[:2] if len(categories) > 2 else categories[:1])


def write_report(run_dir, *, cutoff: Optional[float] = None,
                 categories: Optional[Sequence[str]] = None, union: Optional[str] = None,
                 fdr: Optional[float] = None, topk: int = 10, workers: int = 2,
                 progress: bool = True, thumb_height: int = 96) -> Path:
    """Write ``run_dir/report/index.html`` and one page per layer; returns the index path.

    Works from the saved results alone (no model): ``cutoff``, ``categories``, ``union`` and
    ``fdr`` relabel the units as ``ndcore summary`` does. Strips show up to ``topk`` images
    per unit (as many as the run kept).
    """
    check_positive("topk", topk)
    check_positive("workers", workers)
    check_cutoff(cutoff)
    check_fdr(fdr)
    run_dir = Path(run_dir)
    result = DissectionResult.load(run_dir, union=union, cutoff=cutoff, categories=categories,
                                   fdr=fdr)
    report_dir = run_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    image_paths = image_sources(run_dir)  # None: no file (a copy may be in thumbnails/)
    slugs = layer_slugs(list(result.layers))
    cats = result.vocabulary.categories
    colors = category_colors(cats)
    run_name = run_dir.resolve().name
    js = _static("report.js")
    # the footer's example names the run's categories (the saved vocabulary's, not a subset)
    run_categories = result.config.get("dataset", {}).get("categories") or list(cats)
    common = {"run_name": run_name, "example_categories": footer_categories(run_categories)}
    run_caveats = list(result.config.get("caveats", []))  # on every page: they concern all

    layers = []
    failures: Dict[int, str] = {}  # probe index -> why its image could not be read
    with progress_bar(progress) as bar:
        for name, lr in result.layers.items():
            slug = slugs[name]
            strips, missing, shown_k = {}, 0, 0
            if lr.topk is not None and lr.topk["indices"].size:
                renderer = StripRenderer(report_dir, slug, image_paths, k=topk,
                                         height=thumb_height, workers=workers,
                                         thumbnails=run_dir / THUMBNAILS)
                strips = renderer.render(lr.topk, mask_thresholds(lr), layer_dir(run_dir, name),
                                         bar, description=name)
                missing = renderer.missing
                failures.update(renderer.failures)
                shown_k = min(topk, lr.topk["indices"].shape[1])
            summary = lr.summary()
            page = f"{slug}.html"
            _render("layer.html", report_dir / page, **common, layer=name,
                    summary=summary, caveats=run_caveats + lr.caveats, cutoff=f"{lr.cutoff:g}", categories=cats,
                    chart=charts.units_per_concept(concept_groups(lr),
                                                   f"{name}: detector units per concept"),
                    units=unit_cards(lr, strips, colors, layer_formulas(run_dir, name)),
                    topk=shown_k,
                    missing_images=missing, js=js,
                    layout=result.config.get("layouts", {}).get(name, ""),
                    whole_image=lr.topk is not None and lr.topk["maps"].shape[-2:] == (1, 1),
                    rule=lr.rule, stats=layer_statistics(lr))
            layers.append({"name": name, "page": page, "summary": summary,
                           "caveats": lr.caveats})

    if failures:  # one line for the whole report, not one per image
        index, why = min(failures.items())
        log.warning("report: %d top image(s) could not be read and are drawn as grey masks "
                    "(first: image %d: %s)", len(failures), index, why)
    first = next(iter(result.layers.values()), None)
    figure = charts.stacked_bars(
        [(l["name"], {c: l["summary"]["categories"][c]["unique"] for c in cats}) for l in layers],
        cats, "unique detectors per category")
    index = report_dir / "index.html"
    _render("index.html", index, **common, caveats=run_caveats,
            model_spec=_fmt(result.config.get("model", {}).get("spec")),
            dataset_spec=probe_description(result.config.get("dataset", {})),
            cutoff=f"{first.cutoff:g}" if first else "-", categories=cats, layers=layers,
            columns=statistics_columns([l["summary"] for l in layers]),
            stable=percent(STABLE_LABEL),
            chart=figure, config_rows=config_rows(result.config, result),
            rotation_chart=charts.rotation_curves(
                rotation_curves({l["name"]: l["summary"] for l in layers}, cats), cats),
            interventions=interventions(run_dir, report_dir))
    return index


def statistics_columns(summaries: List[Dict]) -> Dict[str, str]:
    """The index table's chance and confidence columns {summary key: header}: only those some
    layer has (a run without them shows the table it always did)."""
    headers = {"detectors_fdr": "significant", "stable_labels": "stable labels"}
    rates = {s["fdr"] for s in summaries if "fdr" in s}
    if len(rates) == 1:
        headers["detectors_fdr"] = f"significant (FDR {percent(rates.pop())})"
    return {k: h for k, h in headers.items() if any(k in s for s in summaries)}


def probe_description(dataset: Dict) -> str:
    if dataset.get("kind") == "generator":
        return (f"{_fmt(dataset.get('samples'))} of its own samples (seed "
                f"{_fmt(dataset.get('seed'))}), segmented by {_fmt(dataset.get('segmenter'))}")
    return f"{_fmt(dataset.get('spec'))} ({_fmt(dataset.get('images'))} images)"


def interventions(run_dir: Path, report_dir: Path) -> List[Dict]:
    """The interventions saved under RUN/interventions (by `ndcore intervene`), for the index:
    their edit, strongest effects, before/after grids and removal curves."""
    import os

    found = []
    root = run_dir / "interventions"
    for path in sorted(root.glob("**/*.json")) if root.is_dir() else []:
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue  # one being written (`ndcore intervene` writes a hidden folder first)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        rel = lambda name: os.path.relpath(path.parent / name, report_dir)  # noqa: E731
        if path.name == "effects.json" and "concepts" in data:
            effects = sorted(data["concepts"].items(), key=lambda kv: -abs(kv[1]["effect"]))
            found.append({"kind": "effects", "where": path.parent.name, "edit": data.get("edit"),
                          "title": intervention_title(data),
                          "effects": effects[:5], "samples": data.get("samples"),
                          "before": rel("before.png"), "after": rel("after.png")})
        elif path.name == "removal.json" and "points" in data:
            svg = charts.removal_curve_svg(data).replace(' xmlns="http://www.w3.org/2000/svg"', "")
            found.append({"kind": "removal", "where": path.parent.name, "curve": data,
                          "svg": Markup(svg)})
    return found


def intervention_title(data: Dict) -> str:
    """'ablate units 3, 7 of main.8 in region 0,0,4,4 (100 samples)' for an effects.json."""
    edit = data.get("edit") or {}
    title = f"{edit.get('mode') or 'edit'} units {_fmt(edit.get('units'))}"
    if edit.get("layer"):
        title += f" of {edit['layer']}"
    region = edit.get("region")
    if region:
        title += f" in region {region if isinstance(region, str) else ','.join(map(str, region))}"
    if data.get("samples") is not None:
        title += f" ({data['samples']} samples)"
    return title
