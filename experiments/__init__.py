"""Presets (the scale a run is at) and experiments (what a run changes), by paper table and row."""
