"""`ndcore intervene` keeps every intervention: a folder per edit, named from it; the report
lists them all; an earlier one is replaced only with --overwrite, and never half-written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Tuple

import pytest

import ndcore
from ndcore.cli import main
from ndcore.errors import OutputError
from ndcore.gan.editing.intervene import intervention_name, staged_output

HERE = Path(__file__).parent
PLANTED = f"python:{HERE / 'planted_generator.py'}:build"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kept") / "run"
    ndcore.dissect_generator(PLANTED, ["units"], "colors", out, samples=60, seed=1,
                             quantile=0.05, batch_size=60)
    return out


def cli(capsys, *args: str) -> Tuple[int, str]:
    rc = main(list(args))
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def intervene(capsys, run: Path, *args: str) -> Tuple[int, str]:
    return cli(capsys, "intervene", str(run), "--samples", "4", "--batch-size", "4", *args)


def folders(run: Path) -> List[str]:
    """Every entry under RUN/interventions, hidden ones included."""
    root = run / "interventions"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def test_names_are_readable_deterministic_and_distinct():
    assert intervention_name("main.8", [3, 1, 2]) == "main.8-ablate-1-2-3"
    assert intervention_name("main.8", [1, 2, 3]) == intervention_name("main.8", [3, 2, 1, 1])
    assert intervention_name("main.8", [7], insert=True) == "main.8-insert-7"
    assert intervention_name("main.8", [7], insert=2.5, region=(0, 0, 16, 16), seed=3) == \
        "main.8-insert=2.5-7-region-0-0-16-16-seed-3"
    assert intervention_name("main.8", concept="tree", top=[1, 2, 4, 8]) == \
        "main.8-remove-tree-top-1-2-4-8"
    long_a = intervention_name("layer4", list(range(100)))
    long_b = intervention_name("layer4", list(range(99)) + [200])
    assert long_a.startswith("layer4-ablate-0-1-2-3-4-5-and-94-more-") and long_a != long_b
    assert long_a == intervention_name("layer4", list(reversed(range(100))))
    odd = intervention_name("blocks/1", concept="potted plant", top=[1])
    assert "/" not in odd and " " not in odd and odd != intervention_name(
        "blocks_1", concept="potted_plant", top=[1])  # cleaned names keep a hash


def test_every_intervention_is_kept_and_the_report_lists_them_all(run, capsys):
    from ndcore.report.html import interventions

    rc, out = intervene(capsys, run, "--layer", "units", "--units", "1,0", "--insert")
    assert rc == 0, out
    rc, out = intervene(capsys, run, "--layer", "units", "--units", "0,1", "--ablate")
    assert rc == 0, out
    rc, out = intervene(capsys, run, "--units", "2", "--ablate")  # the last layer by default
    assert rc == 0, out
    assert folders(run) == ["units-ablate-0-1", "units-ablate-2", "units-insert-0-1"]
    insert = json.loads((run / "interventions" / "units-insert-0-1" / "effects.json").read_text())
    assert insert["edit"]["mode"] == "insert"  # not replaced by the ablation that followed
    listed = interventions(run, run / "report")
    assert sorted((i["where"], i["edit"]["mode"]) for i in listed) == [
        ("units-ablate-0-1", "ablate"), ("units-ablate-2", "ablate"),
        ("units-insert-0-1", "insert")]


def test_an_earlier_intervention_is_replaced_only_with_overwrite(run, capsys):
    rc, out = intervene(capsys, run, "--units", "3", "--ablate")
    assert rc == 0, out
    folder = run / "interventions" / "units-ablate-3"
    first = (folder / "effects.json").read_text()
    rc, out = intervene(capsys, run, "--units", "3", "--ablate", "--samples", "8")
    assert rc == 2
    assert out.strip() == (f"error: {folder}: holds an earlier intervention; give --overwrite "
                           "to replace it, or --out DIR to write elsewhere")
    assert (folder / "effects.json").read_text() == first
    rc, out = intervene(capsys, run, "--units", "3", "--ablate", "--samples", "8", "--overwrite")
    assert rc == 0, out
    assert json.loads((folder / "effects.json").read_text())["samples"] == 8
    assert not [n for n in folders(run) if n.startswith(".")]  # no staging folder left


def test_a_failed_intervention_leaves_nothing_behind(run, capsys, monkeypatch):
    before = folders(run)
    rc, out = intervene(capsys, run, "--units", "0", "--ablate", "--concept", "nosuch")
    assert rc == 2
    rc, out = intervene(capsys, run, "--units", "9", "--ablate")
    assert rc == 2 and "unit 9 is out of range" in out
    assert folders(run) == before

    # Ctrl-C while the files are written: the earlier intervention stays as it was
    import ndcore.gan.editing.api as api

    folder = run / "interventions" / "units-ablate-3"
    if not folder.is_dir():
        assert intervene(capsys, run, "--units", "3", "--ablate")[0] == 0
    kept = (folder / "effects.json").read_text()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "save_grid", interrupted)
    rc, out = intervene(capsys, run, "--units", "3", "--ablate", "--overwrite")
    assert rc == 130 and out.strip() == "interrupted"
    assert (folder / "effects.json").read_text() == kept
    assert not [n for n in folders(run) if n.startswith(".")]


def test_no_run_no_folders(tmp_path, capsys):
    missing = tmp_path / "nosuch"
    rc, out = intervene(capsys, missing, "--units", "0", "--ablate")
    assert rc == 2 and str(missing) in out
    assert not missing.exists()  # the intervention folder was not left behind


def test_staged_output_refuses_other_folders_and_restores_on_error(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=f"^{other}: exists, is not empty and holds no "
                                          "intervention; choose another --out$"):
        with staged_output(other, overwrite=True):
            pass
    assert (other / "notes.txt").read_text() == "mine"

    done = tmp_path / "done"
    with staged_output(done) as stage:
        (stage / "effects.json").write_text("{}")
    assert (done / "effects.json").is_file()
    with pytest.raises(RuntimeError):
        with staged_output(done, overwrite=True) as stage:
            (stage / "effects.json").write_text('{"new": 1}')
            raise RuntimeError("boom")
    assert (done / "effects.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done", "other"]


def test_report_skips_a_folder_still_being_written(run):
    from ndcore.report.html import interventions

    partial = run / "interventions" / ".units-ablate-1.partial-1"
    partial.mkdir(parents=True)
    (partial / "effects.json").write_text(json.dumps({"concepts": {}, "edit": None}))
    try:
        assert all(not i["where"].startswith(".") for i in interventions(run, run / "report"))
    finally:
        (partial / "effects.json").unlink()
        partial.rmdir()
