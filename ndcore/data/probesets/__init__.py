"""Probe sets of one's own, in the Broden format: written, segmented, converted, merged, checked
and fetched (``ndcore data ...``)."""
