"""Exports with provenance (masks, lesion tables) and pre-annotation imports."""
