"""Chance and confidence where users see them: the dissect flags, the terminal tables, `report
--fdr` / `compare --fdr`, and the HTML report's intervals, stabilities, p-values and its sort and
filter controls; a run without the statistics shows what it always did."""

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

import ndcore
from ndcore.cli import build_parser, main
from ndcore.cli.console import console
from ndcore.cli.dissect import _options
from ndcore.cli.tables import print_summary
from ndcore.report import compare_runs, write_report
from ndcore.report.common import layer_slugs
from ndcore.results import DissectionResult

HERE = Path(__file__).parent
LAYER = "conv1"
STAT_CONTROLS = ('id="sig"', 'id="stable"', 'id="minstab"', 'value="ci-low-desc"',
                 'value="ci-width-asc"', 'value="stability-desc"', 'value="p-asc"')


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """Tables as a wide terminal prints them (no wrapped headers or cells)."""
    monkeypatch.setattr(console, "_width", 200)


@pytest.fixture(scope="module")
def stats_run(tmp_path_factory):
    """The demo CNN's conv1 on 200 synthetic images: enough for a few significant units, and
    for their number to depend on the FDR (the --fdr tests check that premise)."""
    out = tmp_path_factory.mktemp("sig-ui") / "run"
    ndcore.dissect("demo", LAYER, "synthetic", out, max_images=200, batch_size=50, topk=3,
                   quiet=True)
    return out


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sig-ui-plain") / "run"
    ndcore.dissect("demo", LAYER, "synthetic", out, max_images=60, batch_size=30, topk=3,
                   quiet=True, null_permutations=0, bootstrap=0)
    return out


def fresh_copy(run: Path, tmp_path: Path) -> Path:
    """A copy of a module's run, so that a test's report does not change another's."""
    return Path(shutil.copytree(run, tmp_path / run.parent.name))


def parse_dissect(*extra):
    return build_parser().parse_args(["dissect", "--model", "demo", "--layers", LAYER,
                                      "--dataset", "synthetic", "--out", "x", *extra])


def one_line_error(capsys, argv, message):
    assert main(argv) == 2
    out = capsys.readouterr().out
    assert message in out and len(out.strip().splitlines()) == 1, out
    assert "Traceback" not in out


class Cards(HTMLParser):
    """The unit cards' data attributes (and whether they are hidden), in document order."""

    def __init__(self):
        super().__init__()
        self.cards = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "article" and "card" in attrs.get("class", ""):
            self.cards.append(attrs)


def cards(html: str):
    parser = Cards()
    parser.feed(html)
    return parser.cards


def page(run: Path) -> str:
    return (run / "report" / f"{layer_slugs([LAYER])[LAYER]}.html").read_text()


def index_cells(run: Path, column: str):
    return re.findall(rf'<td class="num stat" data-column="{column}">([^<]*)</td>',
                      (run / "report" / "index.html").read_text())


# -- ndcore dissect's flags ----------------------------------------------------------------------

def test_dissect_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["dissect", "--help"])
    text = capsys.readouterr().out
    for flag in ("--null-permutations N", "--bootstrap B", "--resample-seed", "--fdr Q",
                 "--no-null"):
        assert flag in text, flag


def test_dissect_flags_make_the_options():
    options = _options(parse_dissect("--null-permutations", "4", "--bootstrap", "6",
                                      "--resample-seed", "3", "--fdr", "0.1"))
    assert (options.null_permutations, options.bootstrap, options.resample_seed,
            options.fdr) == (4, 6, 3, 0.1)
    options = _options(parse_dissect())  # the defaults of the quantile rule
    assert options.null_permutations > 0 and options.bootstrap > 0 and options.fdr == 0.05
    assert _options(parse_dissect("--no-null")).null_permutations == 0
    assert _options(parse_dissect("--no-null", "--null-permutations", "0")).null_permutations == 0
    options = _options(parse_dissect("--threshold", "best-iou"))
    assert (options.null_permutations, options.bootstrap) == (0, 0)


@pytest.mark.parametrize("extra, message", [
    (["--no-null", "--null-permutations", "4"],
     "--no-null: contradicts --null-permutations 4; give one of them"),
    (["--fdr", "1.5"], "--fdr 1.5: must lie strictly between 0 and 1"),
    (["--bootstrap", "1"], "--bootstrap 1: give at least 2"),
])
def test_dissect_flag_errors_are_one_line(capsys, tmp_path, extra, message):
    one_line_error(capsys, ["dissect", "--model", "demo", "--layers", LAYER, "--dataset",
                            "synthetic:40", "--out", str(tmp_path / "x"), "--quiet", *extra],
                   message)
    assert not (tmp_path / "x").exists()


def test_no_null_run_from_the_command_line(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["dissect", "--model", "demo", "--layers", LAYER, "--dataset", "synthetic",
                 "--max-images", "40", "--batch-size", "20", "--workers", "0", "--out", str(out),
                 "--quiet", "--no-report", "--no-null", "--bootstrap", "3"]) == 0
    text = capsys.readouterr().out
    summary = json.loads((out / LAYER / "summary.json").read_text())["summary"]
    assert summary["null_permutations"] == 0 and summary["bootstrap"] == 3
    assert "detectors_fdr" not in summary and "stable_labels" in summary
    assert "stable" in text and "FDR" not in text  # the table shows what the run has


def test_generator_dissection_takes_the_flags(capsys, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))
    out = tmp_path / "gan"
    assert main(["dissect", "--model", f"python:{HERE / 'planted_generator.py'}:build",
                 "--layers", "units", "--segmenter", "colors", "--samples", "48",
                 "--batch-size", "24", "--quantile", "0.05", "--out", str(out), "--quiet",
                 "--no-report", "--no-null", "--bootstrap", "2", "--fdr", "0.1"]) == 0
    config = json.loads((out / "config.json").read_text())["options"]
    assert (config["null_permutations"], config["bootstrap"], config["fdr"]) == (0, 2, 0.1)


# -- the terminal tables -----------------------------------------------------------------------

def table_row(text: str, layer: str):
    return next(line.split() for line in text.splitlines() if line.split()[:1] == [layer])


def test_summary_table_shows_significant_and_stable(stats_run, plain_run, capsys):
    for fdr, header in ((None, "detectors (FDR 5%)"), (0.2, "detectors (FDR 20%)")):
        result = DissectionResult.load(stats_run, fdr=fdr)
        print_summary(result, top=1)
        text = capsys.readouterr().out
        assert header in text and "stable" in text, text
        s = result[LAYER].summary()
        # layer, units, detectors, significant, stable, unique detectors
        assert table_row(text, LAYER)[:6] == [LAYER, str(s["units"]), str(s["detectors"]),
                                              str(s["detectors_fdr"]), str(s["stable_labels"]),
                                              str(s["unique_detectors"])]
    print_summary(DissectionResult.load(plain_run), top=1)
    text = capsys.readouterr().out
    assert "FDR" not in text and "stable" not in text
    s = DissectionResult.load(plain_run)[LAYER].summary()
    assert table_row(text, LAYER)[:4] == [LAYER, str(s["units"]), str(s["detectors"]),
                                          str(s["unique_detectors"])]


def test_compare_fdr_column(stats_run, plain_run, tmp_path, capsys):
    rows, _ = compare_runs([stats_run, plain_run], out=tmp_path / "c.svg", fdr=0.2)
    expected = DissectionResult.load(stats_run, fdr=0.2)[LAYER].summary()
    assert (rows[0]["detectors_fdr"], rows[0]["stable_labels"], rows[0]["fdr"]) == \
        (expected["detectors_fdr"], expected["stable_labels"], 0.2)
    assert (rows[1]["detectors_fdr"], rows[1]["stable_labels"]) == (None, None)
    assert main(["compare", str(stats_run), str(plain_run), "--out", str(tmp_path / "d.svg"),
                 "--fdr", "0.2"]) == 0
    text = capsys.readouterr().out
    assert "detectors (FDR 20%)" in text
    with_stats, without = [line.split("│") for line in text.splitlines()
                           if f" {LAYER} " in line][:2]
    assert with_stats[5].strip() == str(expected["detectors_fdr"])
    assert without[5].strip() == "-" and without[6].strip() == "-"
    one_line_error(capsys, ["compare", str(stats_run), "--fdr", "0"],
                   "--fdr 0.0: must lie strictly between 0 and 1")


# -- ndcore report ---------------------------------------------------------------------------

def test_report_fdr_relabels_from_the_saved_run(stats_run, tmp_path, capsys):
    run = fresh_copy(stats_run, tmp_path)
    default = DissectionResult.load(run)[LAYER]
    other = DissectionResult.load(run, fdr=0.2)[LAYER]
    assert default.summary()["detectors_fdr"] != other.summary()["detectors_fdr"], \
        "premise: the FDR changes the count on this run"
    for argv, lr in ((["report", str(run), "--quiet"], default),
                     (["report", str(run), "--fdr", "0.2", "--quiet"], other)):
        assert main(argv) == 0
        s = lr.summary()
        assert index_cells(run, "detectors_fdr") == [str(s["detectors_fdr"])]
        assert index_cells(run, "stable_labels") == [str(s["stable_labels"])]
        html = page(run)
        assert f'<b id="significant-count">{s["detectors_fdr"]}</b>' in html
        significant = {int(c["data-unit"]) for c in cards(html) if c["data-significant"] == "1"}
        assert significant == {u.unit for u in lr.units if u.stats["significant"]}
    assert "FDR 20%" in page(run) and "significant (FDR 20%)" in \
        (run / "report" / "index.html").read_text()
    capsys.readouterr()
    one_line_error(capsys, ["report", str(run), "--fdr", "1", "--quiet"],
                   "--fdr 1.0: must lie strictly between 0 and 1")


def test_cards_show_interval_stability_and_chance(stats_run, tmp_path):
    run = fresh_copy(stats_run, tmp_path)
    write_report(run, progress=False)
    html = page(run)
    for control in STAT_CONTROLS:
        assert control in html, control
    lr = DissectionResult.load(run)[LAYER]
    found = {int(c["data-unit"]): c for c in cards(html)}
    assert len(found) == len(lr.units)
    for u in lr.units:
        card, stats = found[u.unit], u.stats
        assert float(card["data-stability"]) == pytest.approx(stats["label_stability"], abs=1e-4)
        assert float(card["data-p"]) == pytest.approx(stats["p_value"], rel=1e-5)
        block = html[html.index(f'id="unit-{u.unit}"'):].split("</article>")[0]
        assert f"stable in {100 * stats['label_stability']:.3g}% of resamples" in block
        assert re.search(r"p = [^,]+, (<b class=\"sig\">significant</b>|<span class=\"nosig\">"
                         r"not significant</span>) at FDR 5%", block), block
        if stats["iou_ci"] is None:  # a unit without a label has no interval
            assert "data-ci-low" not in card and 'class="ci"' not in block
            continue
        low, high = stats["iou_ci"]
        assert float(card["data-ci-low"]) == pytest.approx(low, abs=1e-6)
        assert float(card["data-ci-width"]) == pytest.approx(high - low, abs=1e-6)
        assert re.search(rf'class="ci"[^>]*>\[{low:.3f}, {high:.3f}\]<', block), block
        assert f"chance reaches {stats['null_iou95']:.3f}" in block
    assert 'id="stable-count"' in html and 'id="statistics"' in html


def test_a_run_without_statistics_renders_as_before(plain_run, tmp_path):
    run = fresh_copy(plain_run, tmp_path)
    assert main(["report", str(run), "--quiet", "--fdr", "0.2"]) == 0  # nothing to relabel
    html = page(run)
    for absent in (*STAT_CONTROLS, 'id="statistics"', "stable in", "chance reaches",
                   'class="ci"', "data-stability", "data-p=", "FDR"):
        assert absent not in html, absent
    assert len(cards(html)) == DissectionResult.load(run)[LAYER].summary()["units"]
    index = (run / "report" / "index.html").read_text()
    assert index_cells(run, "detectors_fdr") == [] and "significant" not in index
    assert "stable labels" not in index and "false discovery rate" not in index


def test_only_the_statistics_a_run_has(stats_run, tmp_path):
    """Without the null's p-values (a view of fewer categories than the run's), the stability
    controls stay, the significance ones go, and the page says why."""
    run = fresh_copy(stats_run, tmp_path)
    write_report(run, categories=["color", "object"], progress=False)
    html = page(run)
    assert 'id="stable"' in html and 'value="stability-desc"' in html
    assert 'id="sig"' not in html and 'value="p-asc"' not in html and "data-p=" not in html
    assert 'id="statistics-note"' in html and "categories only" in html
    assert index_cells(run, "detectors_fdr") == [] and len(index_cells(run, "stable_labels")) == 1


# -- the page's script, in a real browser -------------------------------------------------------



@pytest.fixture(scope="module")
def stats_report(stats_run, tmp_path_factory):
    run = fresh_copy(stats_run, tmp_path_factory.mktemp("sig-ui-browser"))
    write_report(run, fdr=0.3, progress=False)
    return run


def visible(dom):
    return [c for c in cards(dom) if "hidden" not in c]


def numbers(found, key):
    return [float(c[key]) for c in found if key in c]


@pytest.mark.browser
def test_sort_and_filter_by_the_statistics(chromium, stats_report, tmp_path):
    from test_browser import browse

    url = (stats_report / "report" / f"{LAYER}.html").as_uri()
    lr = DissectionResult.load(stats_report, fdr=0.3)[LAYER]

    def dom(fragment):
        text = browse(chromium, tmp_path, url + fragment, "--dump-dom")
        assert 'data-ready="1"' in text
        return text

    by_p = visible(dom("#sort=p-asc"))
    assert numbers(by_p, "data-p") == sorted(numbers(by_p, "data-p"))
    by_low = visible(dom("#sort=ci-low-desc"))
    lows = numbers(by_low, "data-ci-low")
    assert lows == sorted(lows, reverse=True)
    # a unit without an interval (no label) sorts last, whichever way: drop the first card's
    html = page(stats_report)
    first = cards(html)[0]
    edited = stats_report / "report" / "edited.html"
    edited.write_text(re.sub(r' data-ci-low="[^"]*" data-ci-width="[^"]*"', "", html, count=1))
    for fragment in ("#sort=ci-low-desc", "#sort=ci-width-asc"):
        order = cards(browse(chromium, tmp_path, edited.as_uri() + fragment, "--dump-dom"))
        assert order[-1]["data-unit"] == first["data-unit"] and "data-ci-low" not in order[-1]
    widths = numbers(visible(dom("#sort=ci-width-asc")), "data-ci-width")
    assert widths == sorted(widths)
    stabilities = numbers(visible(dom("#sort=stability-desc")), "data-stability")
    assert stabilities == sorted(stabilities, reverse=True)

    significant = {u.unit for u in lr.units if u.stats["significant"]}
    assert significant, "premise: some unit is significant at FDR 30%"
    assert {int(c["data-unit"]) for c in visible(dom("#sig=1"))} == significant
    stable = {u.unit for u in lr.units if u.stats["label_stability"] >= 0.9}
    assert {int(c["data-unit"]) for c in visible(dom("#stable=1"))} == stable
    half = {u.unit for u in lr.units if u.stats["label_stability"] >= 0.5}
    text = dom("#minstab=50&det=1")
    detectors = {u.unit for u in lr.detectors()}
    assert {int(c["data-unit"]) for c in visible(text)} == half & detectors
    assert f"{len(half & detectors)} of {len(lr.units)} units shown" in text
