"""Editing a generator's units (ablate / insert), measuring the effect of an edit, edit files."""
