"""Every experiment by paper table and row: a name, where it sits in the paper, and its diff.

An experiment is its base (the GFLV2 default of the preset) plus a few ``--set`` overrides, so a
table is a list of names and a new variant is one line.
"""

from dataclasses import dataclass

from experiments.presets import preset
from gfl_repro.config import Config, apply_overrides


@dataclass(frozen=True)
class Experiment:
    name: str
    table: str  # paper table(s) the row appears in, e.g. "1-5"
    row: str  # the row label as printed in the paper
    overrides: tuple[str, ...] = ()  # the diff from the GFLV2 default, as --set items

    def describe(self) -> str:
        return ", ".join(self.overrides) or "(the GFLV2 default)"


EXPERIMENTS = {
    e.name: e
    for e in [
        Experiment("gflv2", "1-5, 7", "GFLV2 (Top-k(4) + Mean, p = 64, decomposed)"),
        Experiment("gflv1", "2, 4, 6", "GFLV1 (k = 0)", ("model.quality.kind=none",)),
    ]
}


def resolve(name: str, preset_name: str, overrides: list[str] | None = None) -> Config:
    """The config of experiment ``name`` at ``preset_name``, with extra ``--set`` overrides."""
    if name not in EXPERIMENTS:
        raise KeyError(f"unknown experiment {name!r}; `gfl-repro experiments` lists them")
    cfg = preset(preset_name)
    return apply_overrides(cfg, [*EXPERIMENTS[name].overrides, *(overrides or [])])
