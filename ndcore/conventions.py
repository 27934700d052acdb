"""The method's named conventions (docs/method.md sections 5 and 7), on the lowest floor and free
of numpy, so that the command line's flags can name them without loading anything."""

UNIONS = ("paper", "lite", "plain")  # how a label's union counts images (docs/method.md 5)
DEFAULT_CUTOFF = 0.04  # a unit detects its best label when their IoU exceeds this (section 7)
DEFAULT_FDR = 0.05  # false discovery rate of the significant detectors (section 14)
STABLE_LABEL = 0.9  # a label is stable when it stays the unit's best in this share of resamples
