"""Compositional explanations: the logical formula over the probe set's labels whose mask best
matches a unit's (``ndcore formulas``)."""
