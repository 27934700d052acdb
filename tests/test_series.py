"""A series of checkpoints (or architectures) dissected over one pass of the probe data: every
member's run equals a separate ``ndcore dissect`` of it, bit for bit; the probe images are read
once per batch for all members; a killed series resumes; members already complete are read
back; the x-axis comes from the file names; bad series are refused in one line."""

import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import torch

from ndcore.cli import main
from run_fixture import (assert_same_results, dissect_args, env, free_port, ndcore,
                         start_ndcore, torchrun_cmd, write_dataset, write_model)
from test_resume import kill_when


def run(args, capsys=None):
    """``ndcore ARGS`` in this process (faster than a subprocess), as a CompletedProcess."""
    code = main(list(map(str, args)))
    text = capsys.readouterr() if capsys is not None else None
    return subprocess.CompletedProcess(args, code, text.out if text else "",
                                       text.err if text else "")

LAYERS = ("inner.1", "inner.3", "inner.4")
STEPS = (0, 30, 200)

# The same network as run_fixture's, one more conv wide at the end: another architecture that
# takes the same images. It also counts the images read from the probe set (into READS).
OTHER_MODEL = '''
import torch
from torch import nn

READS = {reads!r}


def build():
    if READS:
        from ndcore.data.broden import BrodenDataset
        if not getattr(BrodenDataset, "_counted", False):
            read = BrodenDataset.read

            def counted(self, index, image=True, labels=True):
                if image:
                    with open(READS, "a") as f:
                        f.write(f"{{index}}\\n")
                return read(self, index, image=image, labels=labels)

            BrodenDataset.read, BrodenDataset._counted = counted, True
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 7, 3, padding=1))
'''


def write_checkpoints(model_file: Path, folder: Path) -> list:
    """Three 'training checkpoints' of run_fixture's model: its weights, perturbed."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("series_fixture_model", model_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    state = module.build().state_dict()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for step in STEPS:
        g = torch.Generator().manual_seed(step)
        perturbed = {k: v + 0.3 * torch.randn(v.shape, generator=g) for k, v in state.items()}
        path = folder / f"step_{step:04d}.pt"  # zero-padded: name order = step order
        torch.save(perturbed, path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("series")
    data = write_dataset(root / "data", n_images=42)
    model = write_model(root / "model.py")
    checkpoints = write_checkpoints(model, root / "ckpt")
    references = {}
    for path in checkpoints:
        out = root / "separate" / path.stem
        assert run(dissect_args(model, data, out, "--weights", str(path))).returncode == 0
        references[path.stem] = out
    return root, data, model, checkpoints, references


def models_args(models, layers, data, out, *extra):
    """``ndcore dissect`` of several --model (with their --layers) on the fixture's data."""
    args = ["dissect"]
    for model in models:
        args += ["--model", model]
    for names in layers:
        args += ["--layers", names]
    return args + ["--dataset", f"broden:{data}", "--out", str(out), "--workers", "0",
                   "--batch-size", "4", "--quiet", "--no-report", "--quantile", "0.05", *extra]


def test_series_equals_separate_runs(world, tmp_path, capsys):
    root, data, model, checkpoints, references = world
    out = tmp_path / "series"
    # a glob, given in an order other than the steps': the members come sorted by step
    glob = str(root / "ckpt" / "step_*.pt")
    done = run(dissect_args(model, data, out, "--weights", glob), capsys)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "series.json").read_text())
    assert summary["complete"] and summary["x_label"] == "iteration"
    assert [m["name"] for m in summary["members"]] == [p.stem for p in checkpoints]
    assert [m["x"] for m in summary["members"]] == [float(s) for s in STEPS]
    assert all(m["complete"] and m["layers"] == list(LAYERS) for m in summary["members"])
    for path in checkpoints:
        assert_same_results(references[path.stem], out / path.stem)
        config = json.loads((out / path.stem / "config.json").read_text())
        separate = json.loads((references[path.stem] / "config.json").read_text())
        assert config["model"] == separate["model"] and config["complete"]
        assert config["run"]["series"]["members"] == len(checkpoints)
    assert "Series: 3 models" in done.stdout
    assert not (out / ".series").exists()  # the series' checkpoints go when it is done
    told = run(["summary", out], capsys)
    assert told.returncode == 0 and told.stdout.count("step_0200") == len(LAYERS)


def test_probe_images_read_once_for_all_members(world, tmp_path):
    """Premise: a separate run reads each image once per pass that needs images; the series of
    three reads each image as often as one run does, not three times as often."""
    root, data, model, checkpoints, _ = world
    counter = write_counting_model(tmp_path, reads=tmp_path / "reads.txt")
    one = ndcore(models_args([f"python:{counter}:build"], ["0,2"], data, tmp_path / "one",
                             "--second-pass", "forward"))
    assert one.returncode == 0, one.stderr
    alone = (tmp_path / "reads.txt").read_text().split()
    assert sorted(set(alone)) == sorted({str(i) for i in range(42)})
    # both passes read the images (pass 2 runs the model again), and image 0 decides the
    # layers' layouts before the run
    assert Counter(alone) == Counter([str(i) for i in range(42)] * 2 + ["0"])
    (tmp_path / "reads.txt").unlink()
    series = ndcore(models_args([f"python:{counter}:build", f"python:{model}:build"],
                                ["0,2", ",".join(LAYERS)], data, tmp_path / "series",
                                "--second-pass", "forward"))
    assert series.returncode == 0, series.stderr
    # the passes read each image as one run does; each member's layouts read image 0
    assert Counter((tmp_path / "reads.txt").read_text().split()) == Counter(alone + ["0"])


def write_counting_model(folder: Path, reads=None) -> Path:
    path = folder / "other.py"
    path.write_text(OTHER_MODEL.format(reads=str(reads) if reads else None))
    return path


def test_architectures_side_by_side(world, tmp_path, capsys):
    """--model A --model B, --layers per model: each member equals its own run."""
    root, data, model, checkpoints, references = world
    other = write_counting_model(tmp_path)
    _save_weights(other, tmp_path / "other.pt")
    separate = tmp_path / "separate"
    done = run(models_args([f"python:{other}:build"], ["0,2"], data, separate,
                              "--weights", str(tmp_path / "other.pt")), capsys)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "series"
    done = run(models_args([f"python:{model}:build", f"python:{other}:build"],
                              [",".join(LAYERS), "0,2"], data, out, "--weights",
                              str(checkpoints[1]), "--weights", str(tmp_path / "other.pt")), capsys)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "series.json").read_text())
    names = [m["name"] for m in summary["members"]]
    assert names == [checkpoints[1].stem, "other"] and summary["x_label"] == "order"
    assert_same_results(references[checkpoints[1].stem], out / names[0])
    assert_same_results(separate, out / "other", layers=("0", "2"))


def _save_weights(model_file: Path, path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("series_other_model", model_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.save(module.build().state_dict(), path)


def test_rotation_and_statistics_per_member(world, tmp_path, capsys):
    """--rotate and the null/bootstrap statistics work per member: equal to separate runs."""
    root, data, model, checkpoints, _ = world
    extra = ("--rotate", "inner.4", "--rotate-alpha", "0,1", "--null-permutations", "8",
             "--bootstrap", "4")
    layers = LAYERS + ("inner.4@rot0", "inner.4@rot1")
    for path in checkpoints[:2]:
        done = run(dissect_args(model, data, tmp_path / "sep" / path.stem, "--weights",
                                   str(path), *extra), capsys)
        assert done.returncode == 0, done.stderr
    done = run(dissect_args(model, data, tmp_path / "series", "--weights",
                               str(checkpoints[0]), "--weights", str(checkpoints[1]), *extra), capsys)
    assert done.returncode == 0, done.stderr
    for path in checkpoints[:2]:
        member = tmp_path / "series" / path.stem
        assert (member / "inner.4@rot1" / "resamples.npz").is_file()  # the premise
        assert_same_results(tmp_path / "sep" / path.stem, member, layers=layers)


@pytest.mark.slow
@pytest.mark.parametrize("phase,slow_forward,batches", [(1, 0.15, 3), (2, 0.15, 3)])
def test_killed_series_resumes(world, tmp_path, phase, slow_forward, batches, capsys):
    root, data, _, checkpoints, references = world
    slow = write_model(tmp_path / "slow.py", slow_forward=slow_forward)
    out = tmp_path / "series"
    args = dissect_args(slow, data, out, "--weights", str(checkpoints[0]), "--weights",
                        str(checkpoints[2]), "--checkpoint-every", "0.01", "--second-pass",
                        "forward")
    at = kill_when(start_ndcore(args), out / ".series", phase, batches)
    assert at["batches_done"] < 11  # killed midway: the premise
    summary = json.loads((out / "series.json").read_text())
    assert not summary["complete"] and not any(m["complete"] for m in summary["members"])
    told = run(["summary", out], capsys)
    assert told.returncode != 0
    assert f"the series did not finish: pass {phase} of 2" in told.stdout, told.stdout
    assert "0 of 2 members complete" in told.stdout
    again = ndcore(args)
    assert again.returncode == 0, again.stderr
    assert "resuming the series from its checkpoint" in again.stdout + again.stderr
    for path in (checkpoints[0], checkpoints[2]):
        config = json.loads((out / path.stem / "config.json").read_text())
        assert config["complete"] and config["run"]["resumed"]
        assert_same_results(references[path.stem], out / path.stem)


def test_complete_members_are_read_back(world, tmp_path, capsys):
    """A series given one more checkpoint computes only the new member."""
    root, data, model, checkpoints, references = world
    out = tmp_path / "series"
    first = run(dissect_args(model, data, out, "--weights", str(checkpoints[0]),
                                "--weights", str(checkpoints[1])), capsys)
    assert first.returncode == 0, first.stderr
    kept = (out / checkpoints[0].stem / "inner.1" / "counts.npz").stat().st_mtime_ns
    more = run(dissect_args(model, data, out, "--weights", str(root / "ckpt" / "*.pt")), capsys)
    assert more.returncode == 0, more.stderr
    assert (out / checkpoints[0].stem / "inner.1" / "counts.npz").stat().st_mtime_ns == kept
    assert "already complete" in more.stdout + more.stderr, more.stdout
    summary = json.loads((out / "series.json").read_text())
    assert [m["name"] for m in summary["members"]] == [p.stem for p in checkpoints]
    assert summary["complete"]
    assert_same_results(references[checkpoints[2].stem], out / checkpoints[2].stem)


def test_series_killed_while_writing_its_members_resumes(world, tmp_path, capsys, monkeypatch):
    """Killed after writing one member at the end: the rerun resumes the series' checkpoint
    (made for all three) rather than starting the two others over."""
    from ndcore.engine.run import Dissection

    root, data, model, checkpoints, references = world
    out = tmp_path / "series"
    args = dissect_args(model, data, out, "--weights", str(root / "ckpt" / "*.pt"))
    write, written = Dissection._write, []

    def dies_after_one(self, *a, **k):
        if written:
            raise KeyboardInterrupt  # as a kill between two members' files
        written.append(self.out)
        return write(self, *a, **k)

    monkeypatch.setattr(Dissection, "_write", dies_after_one)
    assert run(args, capsys).returncode != 0
    assert written == [out / checkpoints[0].stem]  # the premise: one member written
    assert json.loads((out / checkpoints[0].stem / "config.json").read_text())["complete"]
    monkeypatch.setattr(Dissection, "_write", write)
    again = run(args, capsys)
    assert again.returncode == 0, again.stdout
    told = again.stdout + again.stderr
    assert "resuming the series from its checkpoint: pass 2" in told, told
    for path in checkpoints:
        assert_same_results(references[path.stem], out / path.stem)
    assert not (out / ".series").exists()


@pytest.mark.slow
def test_series_under_torchrun_equals_one_process(world, tmp_path):
    root, data, model, checkpoints, references = world
    out = tmp_path / "series"
    args = dissect_args(model, data, out, "--weights", str(checkpoints[0]), "--weights",
                        str(checkpoints[1]))
    done = subprocess.run(torchrun_cmd(2, args, free_port()), capture_output=True, text=True,
                          env=env(), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("Series: 2 models") == 1  # rank 0 prints
    for path in checkpoints[:2]:
        assert json.loads((out / path.stem / "config.json").read_text())["run"]["world_size"] == 2
        assert_same_results(references[path.stem], out / path.stem)


def test_x_values_given(world, tmp_path, capsys):
    root, data, model, checkpoints, _ = world
    out = tmp_path / "series"
    done = run(dissect_args(model, data, out, "--weights", str(checkpoints[0]), "--weights",
                               str(checkpoints[1]), "--x", "0.5,2", "--x-label", "epoch"), capsys)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "series.json").read_text())
    assert [m["x"] for m in summary["members"]] == [0.5, 2.0] and summary["x_label"] == "epoch"


@pytest.mark.parametrize("extra,message", [
    (["--weights", "{ckpt}/step_0000.pt", "--weights", "{ckpt}/step_0030.pt", "--x", "1"],
     "--x: 1 values for 2 members"),
    (["--weights", "{ckpt}/step_0000.pt", "--weights", "{ckpt}/step_0030.pt", "--x", "0,nan"],
     "--x nan: x values must be finite"),
    (["--weights", "{ckpt}/nothing_*.pt"], "no file matches"),
    (["--weights", "{ckpt}/step_0000.pt", "--weights", "{ckpt}/step_0000.pt"], "given twice"),
    (["--weights", "{ckpt}/step_*.pt", "--weights-sha256", "abcdef12"], "--weights-sha256"),
    (["--weights", "{ckpt}/step_*.pt", "--thresholds", "inner.1={ckpt}/t.npy"],
     "--thresholds"),
    (["--weights", "{ckpt}/step_0000.pt", "--x", "1"], "--x and --x-label place the members"),
    (["--model", "demo", "--weights", "{ckpt}/step_0000.pt", "--weights", "{ckpt}/step_0030.pt",
      "--weights", "{ckpt}/step_0200.pt"], "--model given 2 times and --weights 3"),
    (["--model", "demo", "--layers", "conv1", "--layers", "conv2", "--layers", "conv3"],
     "--layers given"),
])
def test_bad_series_refused_in_one_line(world, tmp_path, extra, message, capsys):
    root, data, model, checkpoints, _ = world
    extra = [e.format(ckpt=root / "ckpt") for e in extra]
    done = run(dissect_args(model, data, tmp_path / "out", *extra), capsys)
    assert done.returncode != 0
    assert message in done.stdout + done.stderr, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "out" / "series.json").exists()


def test_member_directory_holding_another_run_is_refused(world, tmp_path, capsys):
    root, data, model, checkpoints, references = world
    out = tmp_path / "series"
    other = run(dissect_args(model, data, out / checkpoints[1].stem, "--weights",
                                str(checkpoints[0])), capsys)
    assert other.returncode == 0, other.stderr
    done = run(dissect_args(model, data, out, "--weights", str(checkpoints[0]), "--weights",
                               str(checkpoints[1])), capsys)
    text = done.stdout + done.stderr
    assert done.returncode != 0 and "holds a different run" in text, text
    assert checkpoints[1].stem in text
