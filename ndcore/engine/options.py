"""The options of a dissection run: the one place for their defaults, help texts and checks.

Every field of :class:`DissectOptions` carries a :class:`Flag` in its metadata: how the command
line gives it. ``ndcore dissect`` builds its flags from these (:mod:`ndcore.cli.dissect`), the
Python API takes the fields as keywords (``ndcore.dissect(..., quantile=0.01)``), and an options
object is checked once, when it is made: an invalid one never reaches the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..conventions import DEFAULT_CUTOFF, UNIONS
from ..errors import NdcoreError

# Options that change what a run computes: a run directory is resumed (or refused) by these.
# Labelling options (union, cutoff) and speed settings (batch size, workers, device, caching,
# checkpoint interval) are left out: they do not change thresholds or counts.
RESULT_OPTIONS = ("quantile", "quantile_on", "thresholds", "categories", "topk", "max_images",
                  "precision", "threshold", "layouts", "rotate", "rotate_alpha", "rotate_seed",
                  "null_permutations", "bootstrap", "resample_seed")
# The random-rotation options (docs/method.md section 13): left out of the fingerprint of a run
# without --rotate, so that such a run keeps the fingerprint it had before they existed.
ROTATE_OPTIONS = ("rotate", "rotate_alpha", "rotate_seed")
DEFAULT_ROTATE_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
# Chance and confidence (docs/method.md sections 14-15) under the quantile rule: permutations of
# the null, bootstrap resamples. Each costs one more tally of every batch; see
# benchmarks/bench_significance.py for what the defaults cost.
DEFAULT_NULL_PERMUTATIONS = 8
DEFAULT_BOOTSTRAP = 20

PRECISIONS = ("fp32", "bf16", "fp16")  # the forward pass's autocast dtypes: .forward.AUTOCAST
QUANTILE_ON = ("raw", "upsampled")
SECOND_PASS = ("auto", "cache", "forward")
THRESHOLD_RULES = ("quantile", "best-iou")
COMMAND_LINE_WORKERS = 2  # loader processes of `ndcore dissect` (the Python API uses none)


def method_notes(section: int) -> str:
    """A help text's pointer to the method notes: docs/ is in the source, not in the installed
    package, so the help says where to find them."""
    return f"section {section} of the method notes, docs/method.md in the ndcore source"


@dataclass(frozen=True)
class Flag:
    """How an option is given on the ``ndcore dissect`` command line."""

    name: str  # "--quantile"
    help: Optional[str] = None
    value_type: Optional[Callable[[str], Any]] = None  # int, float; None: the text itself
    choices: Optional[Tuple[str, ...]] = None
    metavar: Optional[str] = None
    action: Optional[str] = None  # "store_true" (a switch) or "append" (repeatable)
    # The command line's default where it differs from the Python API's (the flag's own default
    # is then None, so that the command line can tell whether it was given).
    command_line_default: Any = None


def option(default: Any = None, flag: Optional[Flag] = None, *, factory=None) -> Any:
    """A field of :class:`DissectOptions` with its command-line flag (None: no flag)."""
    metadata = {"flag": flag} if flag is not None else {}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class DissectOptions:
    """What a dissection run computes and how; checked when made (:meth:`validate`).

    The field order is the order of ``config.json``'s "options".
    """

    union: str = option("paper", Flag(
        "--union", choices=UNIONS, help=f"union convention ({method_notes(5)})"))
    quantile: float = option(0.005, Flag(
        "--quantile", value_type=float, help="top quantile per unit"))
    cutoff: float = option(DEFAULT_CUTOFF, Flag(
        "--cutoff", value_type=float, help="IoU above which a unit detects"))
    categories: Optional[List[str]] = option(None, Flag(
        "--categories", help="comma-separated subset of categories"))
    thresholds: Dict[str, str] = option(factory=dict, flag=Flag(  # layer -> .npy file
        "--thresholds", action="append", metavar="LAYER=FILE.npy",
        help="use given per-unit thresholds for a layer (repeatable)"))
    quantile_on: str = option("raw", Flag(  # the layer maps, or label-resolution maps
        "--quantile-on", choices=QUANTILE_ON,
        help="take the quantile over the layer maps or the upsampled maps"))
    batch_size: int = option(32, Flag("--batch-size", value_type=int))
    device: str = option("cpu", Flag(
        "--device", help="cpu or cuda[:N] (under torchrun: cpu or cuda, one GPU per rank)"))
    workers: int = option(0, Flag(
        "--workers", value_type=int, command_line_default=COMMAND_LINE_WORKERS,
        help=f"DataLoader worker processes for --dataset runs (default {COMMAND_LINE_WORKERS})"))
    topk: int = option(10, Flag("--topk", value_type=int, help="top images kept per unit"))
    max_images: Optional[int] = option(None, Flag(
        "--max-images", value_type=int, help="use only the first N images"))
    second_pass: str = option("auto", Flag(  # "cache": kept candidate maps, or "forward"
        "--second-pass", choices=SECOND_PASS,
        help="pass 2 from kept candidate maps (cache) or a second forward pass"))
    cache_dir: Optional[str] = option(None, Flag(  # None: the run's folder
        "--cache-dir",
        help="scratch folder for kept maps, removed on exit (default: inside --out, with the "
             "checkpoint, so that a resumed run keeps them)"))
    cache_memory_mb: Optional[float] = option(None, Flag(  # None: per device
        "--cache-memory-mb", value_type=float,
        help="kept maps held in (device) memory before going to disk (default: a third of a "
             "GPU's free memory; 0 on the CPU)"))
    checkpoint_every: float = option(120.0, Flag(  # seconds; 0 = never
        "--checkpoint-every", value_type=float, metavar="SECONDS",
        help="write a checkpoint this often; running the same command again continues from "
             "it (0 = never; default 120)"))
    overwrite: bool = option(False, Flag(
        "--overwrite", action="store_true", help="replace a different run that --out holds"))
    precision: str = option("fp32", Flag(
        "--precision", choices=PRECISIONS,
        help="run the forward pass under autocast (maps are counted in float32)"))
    threshold: str = option("quantile", Flag(  # NetDissect's rule, or GAN Dissection's
        "--threshold", choices=THRESHOLD_RULES,
        help="per-unit top quantile (NetDissect), or per (unit, concept) the threshold with "
             "the best IoU (GAN Dissection)"))
    layouts: Dict[str, str] = option(factory=dict, flag=Flag(  # layer -> layout
        "--layout", action="append", metavar="LAYER=LAYOUT",
        help="how LAYER's output is laid out: nchw, nhwc (channels last), "
             "tokens[:skip=K][:grid=HxW] ([B, N, C], K leading non-spatial tokens) or vector "
             "([B, C]: whole-image masks); overrides the model's (repeatable; `ndcore layers` "
             "shows each layer's)"))
    compile: bool = option(False, Flag(  # speed only
        "--compile", action="store_true",
        help="torch.compile the model (a one-off compile time, then a faster forward)"))
    rotate: List[str] = option(factory=list, flag=Flag(  # layers whose units are rotated
        "--rotate", action="append", metavar="LAYER",
        help="also dissect LAYER's units under random rotations Q^alpha, as derived layers "
             f"LAYER@rot<alpha> from the same forward pass ({method_notes(13)}; "
             "repeatable)"))
    rotate_alpha: Tuple[float, ...] = option(DEFAULT_ROTATE_ALPHAS, Flag(
        "--rotate-alpha", metavar="A1,A2,...",
        help="the powers alpha in [0, 1] of the rotations of --rotate (0: the layer itself, "
             "1: a Haar-random rotation; default 0,0.25,0.5,0.75,1)"))
    rotate_seed: int = option(0, Flag(
        "--rotate-seed", value_type=int, help="seed of the random rotation of --rotate"))
    # None: the default of the threshold rule (the DEFAULT_* above under quantile, 0 under
    # best-iou, whose per-concept thresholds these statistics do not cover); set when made.
    null_permutations: Optional[int] = option(None, Flag(
        "--null-permutations", value_type=int, metavar="N",
        help="chance: N seeded permutations pairing each image's unit masks with another "
             "image's labels give each (unit, label) a p-value and the IoU chance reaches "
             f"({method_notes(14)}; default {DEFAULT_NULL_PERMUTATIONS}; 0 = off)"))
    bootstrap: Optional[int] = option(None, Flag(
        "--bootstrap", value_type=int, metavar="B",
        help="confidence: B seeded bootstrap resamples of the probe images give each unit's "
             f"label a 95%% interval of its IoU and a stability ({method_notes(15)}; "
             f"default {DEFAULT_BOOTSTRAP}; 0 = off)"))
    resample_seed: int = option(0, Flag(
        "--resample-seed", value_type=int,
        help="seed of the null's permutations and the bootstrap's resamples"))
    fdr: float = option(0.05, Flag(
        "--fdr", value_type=float, metavar="Q",
        help="false discovery rate of the significant detectors (Benjamini-Hochberg across a "
             "layer's units; default 0.05)"))
    channels_last: Optional[bool] = option(None)  # no flag; None: on CUDA only

    def __post_init__(self) -> None:
        self._default_resamples()
        self.validate()

    def _default_resamples(self) -> None:
        """None -> the threshold rule's default (a frozen dataclass: set once, when made)."""
        quantile_rule = self.threshold == "quantile"
        if self.null_permutations is None:
            object.__setattr__(self, "null_permutations",
                               DEFAULT_NULL_PERMUTATIONS if quantile_rule else 0)
        if self.bootstrap is None:
            object.__setattr__(self, "bootstrap", DEFAULT_BOOTSTRAP if quantile_rule else 0)

    def validate(self) -> None:
        """Raises :class:`NdcoreError` (one line, naming the flag) for a value that cannot run."""
        # Imported here, not above: the command line builds its flags from this module, and
        # `ndcore --help` should not wait for torch.
        import torch

        from ..capture import parse_layout

        if self.union not in UNIONS:
            raise NdcoreError(f"--union {self.union!r}: choose one of {', '.join(UNIONS)}")
        if not 0.0 < self.quantile < 1.0:
            raise NdcoreError(f"--quantile {self.quantile}: must lie strictly between 0 and 1")
        if self.quantile_on not in QUANTILE_ON:
            raise NdcoreError("--quantile-on must be 'raw' or 'upsampled'")
        if self.second_pass not in SECOND_PASS:
            raise NdcoreError("--second-pass must be auto, cache or forward")
        if self.batch_size < 1:
            raise NdcoreError(f"--batch-size {self.batch_size}: must be >= 1")
        if self.topk < 1:
            raise NdcoreError(f"--topk {self.topk}: must be >= 1")
        if self.max_images is not None and self.max_images < 1:
            raise NdcoreError(f"--max-images {self.max_images}: must be >= 1")
        if self.workers < 0:
            raise NdcoreError(f"--workers {self.workers}: must be >= 0")
        if self.checkpoint_every < 0:
            raise NdcoreError("--checkpoint-every must be >= 0 seconds (0 = never)")
        if self.threshold not in THRESHOLD_RULES:
            raise NdcoreError(f"--threshold {self.threshold!r}: choose quantile or best-iou")
        if self.threshold == "best-iou" and self.second_pass == "cache":
            raise NdcoreError("--threshold best-iou counts every activation in pass 2, so it "
                              "runs the model again: --second-pass cache cannot serve it")
        if self.threshold == "best-iou" and self.thresholds:
            raise NdcoreError("--threshold best-iou searches each unit's thresholds; it cannot "
                              "be combined with given --thresholds")
        if self.precision not in PRECISIONS:
            raise NdcoreError(f"--precision {self.precision!r}: choose one of "
                              f"{', '.join(PRECISIONS)}")
        for layer, spec in self.layouts.items():
            try:
                parse_layout(spec)
            except NdcoreError as e:
                raise NdcoreError(f"--layout {layer}={spec}: {e}") from None
        self._validate_rotation()
        self._validate_resamples()
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise NdcoreError("--device cuda: no CUDA GPU is available to torch")

    def _validate_rotation(self) -> None:
        import math

        from ..capture.rotation import SEPARATOR, derived_name

        for layer in self.rotate:
            if not isinstance(layer, str) or not layer:
                raise NdcoreError(f"--rotate {layer!r}: give a layer name")
            if SEPARATOR in layer:
                raise NdcoreError(f"--rotate {layer}: a derived layer cannot be rotated again")
        if len(set(self.rotate)) != len(self.rotate):
            raise NdcoreError("--rotate names a layer twice")
        if not self.rotate_alpha:
            raise NdcoreError("--rotate-alpha: give at least one alpha in [0, 1]")
        names = set()
        for alpha in self.rotate_alpha:
            if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) \
                    or not math.isfinite(alpha) or not 0.0 <= alpha <= 1.0:
                raise NdcoreError(f"--rotate-alpha {alpha!r}: each alpha must lie in [0, 1]")
            name = derived_name("", alpha)
            if name in names:
                raise NdcoreError(f"--rotate-alpha {alpha!r}: given twice")
            names.add(name)
        if isinstance(self.rotate_seed, bool) or not isinstance(self.rotate_seed, int) \
                or self.rotate_seed < 0:
            raise NdcoreError(f"--rotate-seed {self.rotate_seed!r}: must be an integer >= 0")

    def _validate_resamples(self) -> None:
        for flag, value, least in (("--null-permutations", self.null_permutations, 2),
                                   ("--bootstrap", self.bootstrap, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise NdcoreError(f"{flag} {value!r}: must be an integer >= 0 (0 = off)")
            if 0 < value < least:
                raise NdcoreError(f"{flag} {value}: give at least {least} (a spread needs "
                                  "two draws), or 0 to turn it off")
        if (self.null_permutations or self.bootstrap) and self.threshold != "quantile":
            raise NdcoreError("--threshold best-iou: the null and the bootstrap cover the "
                              "quantile rule only; give --no-null --bootstrap 0")
        if isinstance(self.resample_seed, bool) or not isinstance(self.resample_seed, int) \
                or self.resample_seed < 0:
            raise NdcoreError(f"--resample-seed {self.resample_seed!r}: must be an integer >= 0")
        if not 0.0 < self.fdr < 1.0:
            raise NdcoreError(f"--fdr {self.fdr}: must lie strictly between 0 and 1")

    def derived_layers(self) -> Dict[str, Tuple[str, float]]:
        """{derived layer name: (source layer, alpha)} of --rotate, in order."""
        from ..capture.rotation import derived_name

        return {derived_name(layer, float(alpha)): (layer, float(alpha))
                for layer in self.rotate for alpha in self.rotate_alpha}
