"""The passes find their statistics through one table: the built-in rows, and a statistic added
as docs/architecture.md shows (one module: an accumulator and its row) that the passes make,
feed, checkpoint, resume and save without knowing it."""

import math

import numpy as np
import pytest
import torch

import ndcore
from ndcore.engine import checkpoint
from ndcore.engine.accumulator import check_mergeable
from ndcore.engine.statistics import (FORWARD_PASS, STATISTICS, TALLY_PASS, Statistic, fed_by,
                                      register)
from run_fixture import write_dataset, write_model


def test_the_built_in_rows():
    rows = {s.name: (s.passes, s.record) for s in STATISTICS.values()}
    assert rows.items() >= {"tail": ((FORWARD_PASS,), None), "topk": ((FORWARD_PASS,), "topk"),
                            "counts": ((FORWARD_PASS, TALLY_PASS), "counts"),
                            "sample": ((FORWARD_PASS,), None),
                            "hist": ((TALLY_PASS,), "counts")}.items()
    tally = [s.name for s in fed_by(TALLY_PASS)]  # counts.npz: the counts' keys, then hist's
    assert tally.index("counts") < tally.index("hist")
    with pytest.raises(ValueError, match="'tail' is registered already"):
        register(STATISTICS["tail"])


# -- the example of docs/architecture.md, "Adding a statistic to the engine" --------------------


class Peak:
    """Per unit, the largest activation over the probe set."""

    def __init__(self, num_units: int) -> None:
        self.num_units = num_units
        self.peak = torch.full((num_units,), -math.inf)

    def add(self, maps, batch) -> None:
        self.peak = torch.maximum(self.peak, maps.amax(dim=(0, 2, 3)).cpu())

    def merge(self, other: "Peak") -> None:
        check_mergeable(self, other, num_units=self.num_units)
        self.peak = torch.maximum(self.peak, other.peak)

    def state_dict(self):
        return {"num_units": self.num_units, "peak": self.peak.clone()}

    def load_state_dict(self, state) -> None:
        self.num_units = int(state["num_units"])
        self.peak = torch.as_tensor(state["peak"]).clone()


PEAK = Statistic(
    "peak", Peak, passes=(FORWARD_PASS,),
    make=lambda run, layer, maps, batch: Peak(maps.shape[1]),
    restore=lambda run, state: Peak(int(state["num_units"])),
    record="counts", output=lambda peak: {"peak": peak.peak.numpy()})


class Killed(BaseException):
    pass


def test_a_new_statistic_is_fed_checkpointed_resumed_and_saved(tmp_path, monkeypatch):
    monkeypatch.setitem(STATISTICS, PEAK.name, PEAK)
    data, model = write_dataset(tmp_path / "data", n_images=24), write_model(tmp_path / "m.py")

    def run(out):
        return ndcore.dissect(f"python:{model}:build", ["inner.1", "inner.4"], f"broden:{data}",
                              out, workers=0, batch_size=4, quantile=0.05,
                              second_pass="forward", checkpoint_every=1e-6)

    whole = run(tmp_path / "whole")
    save = checkpoint.save

    def killed_in_pass_2(run_dir, state, progress):
        save(run_dir, state, progress)
        if progress["phase"] == 2 and progress["batches_done"] >= 2:
            assert "peak" in state["pass1"]["inner.1"]  # pass 1's result, in the checkpoint
            raise Killed

    monkeypatch.setattr(checkpoint, "save", killed_in_pass_2)
    with pytest.raises(Killed):
        run(tmp_path / "resumed")
    monkeypatch.setattr(checkpoint, "save", save)
    resumed = run(tmp_path / "resumed")
    assert resumed.config["run"]["resumed"]
    for layer in ("inner.1", "inner.4"):
        peak = whole[layer].counts["peak"]
        # the best top-k image's peak is the probe set's
        np.testing.assert_array_equal(peak, whole[layer].topk["values"][:, 0])
        np.testing.assert_array_equal(resumed[layer].counts["peak"], peak)
        saved = ndcore.load_result(tmp_path / "resumed")[layer].counts["peak"]
        np.testing.assert_array_equal(saved, peak)
