"""Seeded training of the study's small networks (nets.py) on images of ndcore's synthetic world.

Two tasks on the same images (rendered by ``ndcore.demo.train.render_task_data``, the demo
CNN's training data, seed 1234; the probe set's seed 0 is never trained on):

- ``supervised``: the demo CNN's three tasks at once (scene classification, object presence,
  colour presence, weighted as the demo's ``LOSS_WEIGHTS``), mirror-flipped at random;
- ``rotation`` (self-supervised, no label used): which of 0/90/180/270 degrees the image was
  turned by.

Training counts iterations (batches), so checkpoints are saved at chosen iterations along one
run: ``iter_000000.pt`` (the initialisation), ``iter_000010.pt``, ... and the last one. Each run
lives in a directory named after a hash of its settings; ``train.json`` (settings, validation
metrics, seconds), written last, marks it complete, so a rerun skips it and an interrupted one
starts again.

    python examples/paper-findings/train.py --net vgg_small --iterations 300 --out DIR
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional, Tuple

import torch
import torch.nn.functional as F

from ndcore.demo.train import LOSS_WEIGHTS, TRAIN_SEED, VAL_SEED, TaskData, render_task_data
from ndcore.errors import NdcoreError
from ndcore.files import replace_atomically
from ndcore.progress import progress_bar

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nets  # noqa: E402  (the sibling module, whether run as a script or imported)

# Bumped when training changes in a way the settings do not show: cached runs are then redone.
TRAINING_VERSION = 1
RENDER_SIZE = 112  # the probe set's image size: training images are resized as probe images are
TASK_SIZES = tuple(len(v) for v in nets.TASKS.values())  # scene, object, color logits


@dataclass(frozen=True)
class TrainSettings:
    """One training run; its hash names its directory."""

    net: str
    iterations: int = 400
    batch_size: int = 64
    lr: float = 3e-3
    train_images: int = 3000
    val_images: int = 300
    seed: int = 0
    checkpoints: Tuple[int, ...] = field(default=())  # saved besides 0 and the last

    @property
    def task(self) -> str:
        return nets.NETS[self.net][1]

    def saved_iterations(self) -> Tuple[int, ...]:
        return tuple(sorted({0, self.iterations,
                             *(i for i in self.checkpoints if 0 < i < self.iterations)}))

    def key(self) -> str:
        body = json.dumps({**asdict(self), "version": TRAINING_VERSION}, sort_keys=True)
        return f"{self.net}-{hashlib.sha256(body.encode()).hexdigest()[:10]}"


@dataclass
class StudyData:
    """Images as the networks see them (normalised, 64x64 float) and the demo's targets."""

    x: torch.Tensor  # [N, 3, 64, 64]
    targets: TaskData

    def __len__(self) -> int:
        return len(self.x)


def checkpoint_name(iteration: int) -> str:
    """The file of the weights after ``iteration`` batches (ndcore's series reads the number)."""
    return f"iter_{iteration:06d}.pt"


def render_study_data(n: int, seed: int) -> StudyData:
    """``n`` images of the synthetic world with their targets, preprocessed exactly as
    ``ndcore dissect`` preprocesses probe images for these networks (same resize, same
    normalisation: the adapter's ``Preprocess``)."""
    data = render_task_data(n, seed, image_size=RENDER_SIZE)
    preprocess = nets.study_adapter(torch.nn.Identity(), "data").preprocess
    x = torch.cat([preprocess(data.images[i:i + 500].permute(0, 3, 1, 2))
                   for i in range(0, n, 500)])
    return StudyData(x, data)


class DataCache:
    """Rendered data shared by the runs of one process (render once, train many)."""

    def __init__(self) -> None:
        self._data: Dict[Tuple[int, int], StudyData] = {}

    def get(self, n: int, seed: int) -> StudyData:
        if (n, seed) not in self._data:
            self._data[(n, seed)] = render_study_data(n, seed)
        return self._data[(n, seed)]


def rotate_batch(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Image i turned by k[i] quarter turns (counter-clockwise)."""
    out = x.clone()
    for turns in range(1, 4):
        sel = k == turns
        if sel.any():
            out[sel] = torch.rot90(x[sel], turns, dims=(2, 3))
    return out


def _supervised_loss(logits: torch.Tensor, t: TaskData, idx: torch.Tensor) -> torch.Tensor:
    scene, objects, colors = torch.split(logits, TASK_SIZES, dim=1)
    losses = (F.cross_entropy(scene, t.scene[idx]),
              F.binary_cross_entropy_with_logits(objects, t.objects[idx]),
              F.binary_cross_entropy_with_logits(colors, t.colors[idx]))
    return sum(w * l for w, l in zip(LOSS_WEIGHTS, losses))


@torch.no_grad()
def evaluate(net: torch.nn.Module, task: str, data: StudyData,
             batch_size: int = 150) -> Dict[str, float]:
    """Validation accuracy: scene (24-way), object and colour presence (mean per label), or
    rotation (4-way, every image under each of the 4 turns)."""
    net.eval()
    hits: Dict[str, float] = {}
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)))
        x = data.x[idx]
        if task == "rotation":
            for turns in range(4):
                pred = net(torch.rot90(x, turns, dims=(2, 3))).argmax(1)
                hits["rotation"] = hits.get("rotation", 0.0) + (pred == turns).sum().item() / 4
            continue
        scene, objects, colors = torch.split(net(x), TASK_SIZES, dim=1)
        t = data.targets
        for name, value in (
                ("scene", (scene.argmax(1) == t.scene[idx]).float().sum()),
                ("object", ((objects > 0).float() == t.objects[idx]).float().mean(1).sum()),
                ("color", ((colors > 0).float() == t.colors[idx]).float().mean(1).sum())):
            hits[name] = hits.get(name, 0.0) + value.item()
    return {k: round(v / len(data), 4) for k, v in hits.items()}


def _save_state(net: torch.nn.Module, path: Path) -> None:
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    replace_atomically(path, lambda tmp: torch.save(state, tmp))


def is_trained(run_dir: Path) -> bool:
    return (run_dir / "train.json").is_file()


def train(settings: TrainSettings, root: Path, data: Optional[DataCache] = None,
          log: Callable[[str], None] = print, threads: int = 2, quiet: bool = True) -> Path:
    """Train ``settings.net`` into ``root/<settings.key()>`` (skipped when already complete);
    returns that directory, holding ``iter_NNNNNN.pt`` for every saved iteration; a progress
    bar over the iterations unless ``quiet``."""
    if settings.net not in nets.NETS:
        raise NdcoreError(f"--net {settings.net}: not one of {', '.join(nets.NETS)}")
    run_dir = Path(root) / settings.key()
    if is_trained(run_dir):
        return run_dir
    data = data or DataCache()
    run_dir.mkdir(parents=True, exist_ok=True)
    with _reproducible(threads), progress_bar(enabled=not quiet) as bar:
        _train(settings, run_dir, data, log, bar)
    return run_dir


@contextmanager
def _reproducible(threads: int) -> Iterator[None]:
    """Fixed threads and deterministic algorithms while training; the caller's restored."""
    before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        torch.use_deterministic_algorithms(before[1])


def _train(settings: TrainSettings, run_dir: Path, data: DataCache,
           log: Callable[[str], None], bar) -> None:
    torch.manual_seed(settings.seed)
    t0 = time.time()
    train_data = data.get(settings.train_images, TRAIN_SEED)
    val_data = data.get(settings.val_images, VAL_SEED)
    net = nets.build_net(settings.net)
    opt = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=5e-4)
    # at least 10 steps: OneCycleLR divides by its warm-up's length, 0 for a handful
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.lr, pct_start=0.2,
                                                total_steps=max(settings.iterations, 10))
    gen = torch.Generator().manual_seed(settings.seed)
    saved = settings.saved_iterations()
    order = torch.randperm(len(train_data), generator=gen)
    cursor = 0
    _save_state(net, run_dir / checkpoint_name(0))
    task = bar.add_task(f"training {settings.net}", total=settings.iterations)
    for iteration in range(1, settings.iterations + 1):
        net.train()
        if cursor + settings.batch_size > len(order):  # a new epoch
            order, cursor = torch.randperm(len(train_data), generator=gen), 0
        idx = order[cursor:cursor + settings.batch_size]
        cursor += settings.batch_size
        x = train_data.x[idx]
        flip = torch.rand(len(idx), generator=gen) < 0.5  # every target is mirror-invariant
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        if settings.task == "rotation":
            turns = torch.randint(0, 4, (len(idx),), generator=gen)
            loss = F.cross_entropy(net(rotate_batch(x, turns)), turns)
        else:
            loss = _supervised_loss(net(x), train_data.targets, idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if iteration in saved:
            _save_state(net, run_dir / checkpoint_name(iteration))
        bar.advance(task)
    metrics = evaluate(net, settings.task, val_data)
    seconds = round(time.time() - t0, 1)
    record = {"settings": asdict(settings), "task": settings.task, "key": settings.key(),
              "version": TRAINING_VERSION, "checkpoints": [checkpoint_name(i) for i in saved],
              "val": metrics, "seconds": seconds}
    replace_atomically(run_dir / "train.json",
                       lambda tmp: tmp.write_text(json.dumps(record, indent=1)))
    log(f"trained {settings.net} ({settings.task}, {settings.iterations} iterations) in "
        f"{seconds:.0f}s: val {metrics}")


def read_record(run_dir: Path) -> Dict:
    return json.loads((Path(run_dir) / "train.json").read_text())


def main(argv: Optional[list] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--net", required=True, choices=sorted(nets.NETS))
    p.add_argument("--iterations", type=int, default=TrainSettings.iterations)
    p.add_argument("--train-images", type=int, default=TrainSettings.train_images)
    p.add_argument("--checkpoints", default="", help="comma-separated iterations to save")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    checkpoints = tuple(int(v) for v in args.checkpoints.split(",") if v)
    run = train(TrainSettings(args.net, args.iterations, train_images=args.train_images,
                              seed=args.seed, checkpoints=checkpoints), args.out, quiet=False)
    print(run)


if __name__ == "__main__":
    main()
