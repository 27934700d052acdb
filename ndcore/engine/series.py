"""A series of dissections over one pass of the probe data (checkpoints of a training run, or
models of different architectures that take the same images).

    probe stream ──batch──▶ member 1's model ──maps──▶ "name1/layer" accumulators
        (read, decoded,  ├─▶ member 2's model ──maps──▶ "name2/layer" accumulators
         labelled once)  └─▶ ...

The members' layers become the layers of one run of the passes, named ``MEMBER/LAYER``: the
passes, checkpoints, kept maps and processes treat them as any layers, and a layer's
statistics depend only on its own maps, which are those of a separate run of its member. At
the end the results are split per member and each member's run directory is written exactly
as a separate ``ndcore dissect`` of it would be (same thresholds, counts, labels, top images).

Where things go, under the series' directory ``DIR``:

    DIR/<member>/        each member's run directory (config.json, layers, report)
    DIR/series.json      the series summary (:mod:`ndcore.results.series`)
    DIR/.series/         the series' own checkpoints while it runs

A member already complete in its directory is read back, not recomputed; the others run
together, resuming the series' checkpoint when it was made for the same members.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import warnings
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch

from ..data.probe import ProbeBatch
from ..errors import NdcoreError
from ..files import replace_atomically
from ..progress import progress_bar
from ..results import DissectionResult
from ..results.series import Series, SeriesMember
from . import checkpoint, distributed
from .passes import Passes, PassResults
from .rundir import RunDirectory, fingerprint_hash
from .run import (Dissection, _Progress, resume_point, resumed_grid, run_record,
                  status)
from .scratch import remove_stale
from .stage import Stage

# The series' own run folder (checkpoints); a member's name never starts with a dot.
STATE_DIR = ".series"
SEPARATOR = "/"  # MEMBER/LAYER: a member's layer among the series' layers
MEMBERS_FILE = "members.json"  # in STATE_DIR: the members its checkpoint is made for


@dataclass
class SeriesResult:
    """The finished series (rank 0): its summary and each member's result, in order."""

    series: Series
    results: List[DissectionResult]

    def __iter__(self) -> Iterator[Tuple[SeriesMember, DissectionResult]]:
        return iter(zip(self.series.members, self.results))


class SeriesStage(Stage):
    """Every member's stage on the same batch: their maps under ``MEMBER/LAYER``."""

    def __init__(self, stages: Dict[str, Stage]) -> None:
        self.stages = stages

    @contextmanager
    def capturing(self, layers: Sequence[str], on_labels=None) -> Iterator:
        wanted: Dict[str, List[str]] = {}
        for layer in layers:
            member, _, name = layer.partition(SEPARATOR)
            wanted.setdefault(member, []).append(name)
        with ExitStack() as stack:
            runs = {m: stack.enter_context(self.stages[m].capturing(names))
                    for m, names in wanted.items()}

            def step(batch: ProbeBatch):
                out: Dict[str, torch.Tensor] = {}
                for member, run in runs.items():
                    maps, _ = run(batch)  # a dataset's stage labels nothing: the batch as read
                    out.update({f"{member}{SEPARATOR}{l}": m for l, m in maps.items()})
                return out, batch

            yield step


class SeriesDissection:
    """Several :class:`Dissection` members (one probe source, one set of options, each with
    its own model and run directory ``out/NAME``) run over one pass of the probe data."""

    def __init__(self, members: Sequence[Dissection], summary: Series,
                 quiet: bool = False) -> None:
        if not members:
            raise NdcoreError("a series needs at least one model")
        first = members[0]
        for m in members[1:]:
            if m.source is not first.source:
                raise NdcoreError("the members of a series must share one probe source")
            if m.options != first.options:
                raise NdcoreError("the members of a series must share the run options")
        if first.options.thresholds:
            raise NdcoreError("--thresholds names one model's layers; a series finds every "
                              "member's thresholds (dissect that model on its own)")
        if any(type(m) is not Dissection for m in members):  # a generator's samples are its own
            raise NdcoreError("a series dissects models over one probe dataset; dissect each "
                              "generator on its own")
        self.members = list(members)
        self.summary = summary
        self.out = summary.directory
        self.options = first.options
        self.source = first.source
        self.quiet = quiet

    def run(self) -> Optional[SeriesResult]:
        """Run (or resume) the series; its result on rank 0, None on other ranks."""
        return distributed.run_in_group(self.options.device, self._run)

    def _run(self, dist: distributed.Dist, device: torch.device) -> Optional[SeriesResult]:
        remove_stale(self.options.cache_dir)
        configs = [m.config() for m in self.members]
        finished: Dict[int, DissectionResult] = {}
        if dist.is_writer:
            for i, (member, config) in enumerate(zip(self.members, configs)):
                run_dir = RunDirectory(member.out)
                run_dir.prepare(config, self.options.overwrite)
                if run_dir.complete:
                    result = member._load_complete(run_dir, config)
                    if result is not None:
                        finished[i] = result
            self._write_summary(finished)
        pending = [i for i in range(len(self.members)) if i not in finished]
        if dist.is_writer:
            pending = self._with_checkpoint_members(pending, finished, configs)
        pending = dist.broadcast(pending)
        computed: Dict[int, DissectionResult] = {}
        if pending:
            computed = self._run_members(pending, [configs[i] for i in pending], dist, device)
            if computed is None:
                return None
        if not dist.is_writer:
            return None
        results = {**finished, **computed}
        self._write_summary(results)
        return SeriesResult(self.summary, [results[i] for i in range(len(self.members))])

    def _with_checkpoint_members(self, pending: List[int], finished: Dict[int, DissectionResult],
                                 configs: List[Dict]) -> List[int]:
        """``pending``, plus the finished members that the series' checkpoint was made with: a
        series killed while it wrote its members at the end has written some of them, and its
        checkpoint serves only the members it was made for (those are run again, and write
        the same files)."""
        if not pending:  # every member was written: what the series left is of no use
            shutil.rmtree(self.out / STATE_DIR, ignore_errors=True)
            return pending
        try:
            made_for = json.loads((self.out / STATE_DIR / MEMBERS_FILE).read_text())
            index = {m.name: i for i, m in enumerate(self.summary.members)}
            members = [index[name] for name in made_for["names"]]
        except (OSError, ValueError, KeyError, TypeError):
            return pending
        if not set(pending) <= set(members) or \
                not all(i in finished or i in pending for i in members) or \
                _fingerprint([self.summary.members[i].name for i in members],
                             [configs[i] for i in members]) != made_for["fingerprint"]:
            return pending
        for i in members:
            finished.pop(i, None)
        return members

    def _write_summary(self, complete: Dict[int, DissectionResult]) -> None:
        for i, member in enumerate(self.summary.members):
            member.complete = i in complete
        self.summary.complete = len(complete) == len(self.members)
        self.summary.write()

    def _run_members(self, pending: List[int], configs: List[Dict], dist: distributed.Dist,
                     device: torch.device) -> Optional[Dict[int, DissectionResult]]:
        """The pending members, over one pass of the probe data; their results (rank 0)."""
        members = [self.members[i] for i in pending]
        names = [self.summary.members[i].name for i in pending]
        state_dir = self.out / STATE_DIR
        fingerprint = _fingerprint(names, configs)
        resume = None
        if dist.is_writer:
            resume = self._resume_state(state_dir, fingerprint)
            body = json.dumps({"names": names, "fingerprint": fingerprint})
            state_dir.mkdir(parents=True, exist_ok=True)
            replace_atomically(state_dir / MEMBERS_FILE, lambda tmp: tmp.write_text(body))
        previous_s, batch_size, grid = resumed_grid(resume, dist, self.options.batch_size,
                                                    len(self.source))
        started = time.time()
        if resume is not None:
            status.info("resuming the series from its checkpoint: %s, %d members",
                        resume_point(resume, grid), len(members))
        keeps_checkpoints = dist.is_writer and self.options.checkpoint_every > 0
        layers = [f"{n}{SEPARATOR}{l}" for n, m in zip(names, members) for l in m.layers]
        with progress_bar(not self.quiet and dist.is_writer) as bar:
            stages = {name: m.rotating_stage(device) for name, m in zip(names, members)}
            passes = Passes(
                stage=SeriesStage(stages), stream=members[0]._stream(grid, device),
                layers=layers, given={}, options=self.options,
                labelspace=members[0].labelspace, dist=dist, device=device,
                run_dir=state_dir if keeps_checkpoints else None,
                fingerprint=fingerprint, progress=_Progress(bar), previous_s=previous_s)
            results = passes.run(resume)
        if results is None:
            return None
        elapsed = previous_s + time.time() - started
        out: Dict[int, DissectionResult] = {}
        for i, name, member, config in zip(pending, names, members, configs):
            part = _member_results(results, name)
            config["run"] = run_record(elapsed, resume is not None, dist.world, batch_size, part)
            # the run was one of a series' members: its time and kept maps are the series'
            config["run"]["series"] = {"directory": str(self.out.resolve()),
                                       "members": len(members)}
            config["layer_caveats"] = member.layer_caveats(part)
            result = member._result(part, config)
            member._write(result, part, RunDirectory(member.out), config)
            out[i] = result
        shutil.rmtree(state_dir, ignore_errors=True)
        return out

    def _resume_state(self, state_dir: Path, fingerprint: str) -> Optional[Dict]:
        """The series' checkpoint when it was made for these very members; else None (and
        the stale one is removed, with the kept maps it covered)."""
        try:
            state = checkpoint.load(state_dir)
        except ValueError as e:
            warnings.warn(f"{e}; starting the series again")
            state = None
        if state is not None and state.get("fingerprint") == fingerprint:
            return state
        if state is not None:
            status.info("%s: the series' checkpoint was made for other members; starting "
                        "again", self.out)
        checkpoint.remove(state_dir)
        return None


def _fingerprint(names: List[str], configs: List[Dict]) -> str:
    """What the series' checkpoint is made for: its members, in order, and their runs."""
    return hashlib.sha256(json.dumps(
        [[n, fingerprint_hash(c)] for n, c in zip(names, configs)]).encode()).hexdigest()


def _member_results(results: PassResults, name: str) -> PassResults:
    """A member's share of the series' results, under its own layer names."""
    prefix = f"{name}{SEPARATOR}"

    def mine(table: Dict) -> Dict:
        return {k[len(prefix):]: v for k, v in table.items() if k.startswith(prefix)}

    return PassResults(mine(results.thresholds), mine(results.topk), mine(results.counts),
                       mine(results.resamples), results.second_pass, results.map_store,
                       results.checkpoints)
