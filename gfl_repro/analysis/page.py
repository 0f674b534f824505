"""results/<preset>/index.html: one static page of a preset's results, from the results folder
and the run folders only. In order: the paper's claims with their verdicts (claims.json), every
table written (main.csv, table*.csv: ours mean ± std over seeds beside the paper's), every figure
with its caption and links to its PDF and CSV, the runs (config difference from the base, seeds,
training time) and their environments.

Self-contained: CSS inline, figures linked relative to the page (results/<preset>/figures/), no
network. Its only script marks an image that fails to load (data-broken="1"), for readers and for
the browser test.

``gfl-repro report --preset mini [--runs runs] [--results results]`` (``make report``).
"""

import html
import json
import re
import time
from collections import Counter
from pathlib import Path

import jinja2
import pandas as pd
from markupsafe import Markup

from gfl_repro.analysis.report import is_missing, ours_cell, paper_cell
from gfl_repro.config import Config, ConfigError, from_dict, to_dict
from gfl_repro.engine.runs import RunFolder
from gfl_repro.io import atomic_write_text

PAGE = "index.html"
TEMPLATES = Path(__file__).parent / "templates"
# Every figure the analysis draws, in the paper's order: file stem -> caption. A stem without
# a PNG is shown as missing; a PNG not listed here is shown under its file name.
FIGURES = {
    "fig1b_top1_vs_iou": "Fig. 1b. GFLV1's val positives: the mean Top-1 probability of the four "
    "side distributions against the real IoU of the box (density; Pearson r in the title). A "
    "sharper distribution goes with a better box: the correlation DGQP builds on.",
    "fig1cd_distributions": "Fig. 1c/d. Detections with the sharpest and the flattest side "
    "distributions of a GFLV2 run: the predicted distribution of each side over its bins, in "
    "stride units, with the predicted side (its mean) and the ground-truth side; on the image "
    "the predicted box (dashed green) over the ground-truth box (white).",
    "fig4_shift_invariance": "Fig. 4. A side distribution and its shifted copy give the same "
    "Top-k + mean statistics: DGQP sees the shape of the distribution, not where it sits.",
    "fig6_speed_accuracy": "Fig. 6. Speed against accuracy: inference latency per image and AP "
    "of the benchmarked runs (gfl-repro bench-model).",
    "fig7_nms": "Fig. 7. The boxes around one object before and after NMS for GFLV1 and GFLV2; "
    "each written box reads its joint score J | its IoU with the ground truth. The object is the "
    "largest clear, unoccluded one that both runs detect.",
    "fig8_lqe_loss": "Fig. 8. The LQE loss (QFL, EMA-smoothed) of GFLV1 and GFLV2 during "
    "training: mean over seeds, band from min to max.",
    "fig9_dgqp_input_output": "Fig. 9. GFLV2's val positives: DGQP's input (mean Top-1 "
    "probability) against its output I (density, Pearson r).",
    "lqe_over_training": "LQE during training: the PCC of J and I with the IoU over val positives "
    "at each evaluated checkpoint, and the mean of I and J (runs with "
    "runtime.lqe_every_epoch=true).",
}


# --- claims: claims.json -----------------------------------------------------------------------


def read_claims(results: Path) -> dict | None:
    """claims.json of experiments/claims.py (its module docstring gives the schema): the method
    text, the tally of verdicts, and the claims with their verdicts, numbers, lines and parts;
    None when absent. A results folder written before claims.json existed has only claims.md,
    which is not parsed, and a claims.json written before the tally was recorded shows none:
    ``make figures`` writes both anew."""
    path = results / "claims.json"
    return json.loads(path.read_text()) if path.is_file() else None


def inline_markdown(text: str) -> Markup:
    """The inline Markdown of the claims' text (`code`, **bold**) as HTML, everything else
    escaped."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return Markup(re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out))


# --- tables: main.csv and table<N>.csv ----------------------------------------------------------


def _text(value) -> str:
    return "" if is_missing(value) else str(value)


def _table_row(row: pd.Series, metrics: list[str]) -> dict:
    """One experiment of a table: per metric ours, the paper's (ours − paper) and each seed's
    interval where the table has one; a row with no number of ours is missing as a whole."""
    cells = [
        {"ours": ours_cell(row, m), "paper": paper_cell(row, m), "missing": is_missing(row[m]),
         "ci": _text(row.get(f"{m}_ci"))}
        for m in metrics
    ]  # fmt: skip
    return {"experiment": row["experiment"], "label": _text(row.get("row")),
            "seeds": int(row["seeds"]), "cells": cells,
            "missing": all(c["missing"] for c in cells)}  # fmt: skip


def read_table(path: Path) -> dict:
    """A table CSV of experiments/tables.py or analysis/main_result.py: its metrics are the
    columns with a "<metric>_paper" beside them; its title is the first heading of the Markdown
    written with it."""
    frame = pd.read_csv(path)
    metrics = [c for c in frame.columns if f"{c}_paper" in frame.columns]
    markdown = path.with_suffix(".md")
    lines = markdown.read_text().splitlines() if markdown.is_file() else []
    titles = [line[3:] for line in lines if line.startswith("## ")]
    return {"name": path.stem, "title": titles[0] if titles else path.stem, "metrics": metrics,
            "rows": [_table_row(r, metrics) for _, r in frame.iterrows()],
            "csv": path.name, "md": markdown.name if markdown.is_file() else None}  # fmt: skip


def read_tables(results: Path) -> list[dict]:
    """main.csv first, then table<N>.csv by N."""
    paths = [p for p in results.glob("*.csv") if re.fullmatch(r"main|table\d+", p.stem)]
    order = sorted(paths, key=lambda p: -1 if p.stem == "main" else int(p.stem[5:]))
    return [read_table(p) for p in order]


# --- figures ------------------------------------------------------------------------------------


def caption(stem: str) -> str:
    """A figure's caption: FIGURES', a run's training curves by their name pattern, else the
    file name."""
    if stem in FIGURES:
        return FIGURES[stem]
    if stem.startswith("curves_"):
        run = stem.removeprefix("curves_")
        return (f"Training curves of {run}: every loss term per logged iteration, val AP per "
                "evaluated epoch.")  # fmt: skip
    return stem


def figure_list(results: Path) -> list[dict]:
    """Every figure of ``FIGURES`` (missing ones included) and any other PNG of figures/: its
    caption and the paths, relative to the page, of its PNG, PDF and CSV (None when absent)."""
    folder = results / "figures"
    others = sorted(p.stem for p in folder.glob("*.png") if p.stem not in FIGURES)
    out = []
    for stem in [*FIGURES, *others]:
        files = {ext: f"figures/{stem}.{ext}" if (folder / f"{stem}.{ext}").is_file() else None
                 for ext in ("png", "pdf", "csv")}  # fmt: skip
        out.append({"name": stem, "caption": caption(stem), **files})
    return out


# --- runs and environments ----------------------------------------------------------------------


def flatten(config: dict, prefix: str = "") -> dict:
    """{"model": {"head": {"k": 4}}} -> {"model.head.k": 4}: the keys of ``--set``."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def run_config(run: RunFolder) -> dict:
    """The run's config.json, flat; keys added to the code since it was written read as their
    defaults (as check_same_config reads them), a config the code no longer reads as saved."""
    saved = run.read(run.CONFIG)
    try:
        return flatten(to_dict(from_dict(Config, saved)))
    except (ConfigError, TypeError, ValueError):
        return flatten(saved)


def _show(value) -> str:
    if isinstance(value, list):
        return ",".join(_show(v) for v in value)
    return json.dumps(value) if isinstance(value, bool) or value is None else str(value)


def config_diff(config: dict, base: dict) -> list[str]:
    """The fields of flat ``config`` that differ from flat ``base``, as ``--set`` items."""
    changed = [f"{k}={_show(v)}" for k, v in config.items() if k not in base or base[k] != v]
    return changed + [f"{k} absent" for k in base if k not in config]


def base_config(configs: dict[str, dict], experiments: dict[str, str], name: str):
    """(flat base config, what it is): the config of a run of experiment ``name`` (the preset's
    GFLV2 default), or else each field's most common value over the runs."""
    for run, experiment in experiments.items():
        if experiment == name:
            return configs[run], f"the config of experiment `{name}`"
    keys = {k for c in configs.values() for k in c}
    mode = {k: Counter(json.dumps(c.get(k)) for c in configs.values()).most_common(1)[0][0]
            for k in keys}  # fmt: skip
    return {k: json.loads(v) for k, v in mode.items()}, "each field's most common value"


ENV_KEYS = ("git_commit", "device", "cpu", "processes", "threads", "python", "platform", "packages")


def environments(folders: list[RunFolder]) -> tuple[list[dict], dict[str, int]]:
    """The distinct environments (env.json less the run's identity) and each run's number in
    that list, from 1."""
    keys, ids = {}, {}
    for run in folders:
        env = {k: run.env.get(k) for k in ENV_KEYS}
        key = json.dumps(env, sort_keys=True)
        keys.setdefault(key, {"id": len(keys) + 1, "runs": 0, **env})["runs"] += 1
        ids[str(run.path)] = keys[key]["id"]
    envs = list(keys.values())
    for env in envs:
        env["packages"] = ", ".join(f"{k} {v}" for k, v in (env["packages"] or {}).items())
        cpu = env["cpu"]  # None before env.json recorded it
        env["kernels"] = f"{cpu['capability']}, {cpu['model']}" if cpu else "unrecorded"
    return envs, ids


def run_folders(runs_dir: Path) -> dict[str, list[RunFolder]]:
    """The run folders under ``runs_dir`` (any folder holding config.json, as collect_runs finds
    them) by experiment, each experiment's in seed order. Read without their LQE dumps, which
    collect_runs loads for the PCC and a page does not need."""
    out = {}
    for config in sorted(runs_dir.glob(f"**/{RunFolder.CONFIG}")):
        run = RunFolder(config.parent)
        out.setdefault(run.identity["experiment"] or str(run.path), []).append(run)
    return {e: sorted(out[e], key=lambda r: r.identity["seed"] or 0) for e in sorted(out)}


def _seed(run: RunFolder, env_id: int, runs_dir: Path) -> dict:
    """A seed of an experiment: complete or not, its wall hours of training (None when not
    recorded), the number of its environment, its folder relative to ``runs_dir``'s parent (the
    page may be published away from the machine that wrote it)."""
    seconds = run.metrics.get("train_seconds")
    hours = None if seconds is None else seconds / 3600
    path = (
        run.path.relative_to(runs_dir.parent)
        if run.path.is_relative_to(runs_dir.parent)
        else run.path
    )
    return {"seed": run.identity["seed"], "complete": run.is_complete, "hours": hours,
            "env": env_id, "path": str(path)}  # fmt: skip


def run_list(runs_dir: Path, base: dict | None, base_experiment: str) -> dict:
    """Per experiment: the table rows it serves, its config difference from the base, its seeds
    (complete or not, training hours, environment); the environments; the summary line."""
    folders = run_folders(runs_dir)
    configs = {str(r.path): run_config(r) for runs in folders.values() for r in runs}
    if base is None:
        named = {str(r.path): e for e, runs in folders.items() for r in runs}
        ref, ref_name = base_config(configs, named, base_experiment)
    else:
        ref, ref_name = flatten(base), "the preset's base config"
    envs, env_ids = environments([r for runs in folders.values() for r in runs])
    experiments = []
    for name, runs in folders.items():
        diffs = {tuple(config_diff(configs[str(r.path)], ref)) for r in runs}
        experiments.append({
            "name": name, "rows": sorted({x for r in runs for x in r.identity["rows"]}),
            "diff": list(min(diffs)), "same_config": len(diffs) == 1,
            "seeds": [_seed(r, env_ids[str(r.path)], runs_dir) for r in runs],
        })  # fmt: skip
    seeds = [s for e in experiments for s in e["seeds"]]
    commits = sorted({e["git_commit"][:7] for e in envs if e["git_commit"]})
    summary = {"runs": len(seeds), "complete": sum(s["complete"] for s in seeds),
               "experiments": len(experiments), "commits": commits}  # fmt: skip
    return {"experiments": experiments, "environments": envs, "base": ref_name,
            "summary": summary}  # fmt: skip


# --- the page -----------------------------------------------------------------------------------


def render(context: dict) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True,
        lstrip_blocks=True, undefined=jinja2.StrictUndefined,
    )  # fmt: skip
    env.filters["inline"] = inline_markdown
    return env.get_template("index.html.j2").render(**context)


def build_page(runs_dir: str | Path, results_dir: str | Path, preset: str,
               base: dict | None = None, base_experiment: str = "gflv2") -> Path:  # fmt: skip
    """Write ``results_dir/index.html`` from ``results_dir`` (claims.json, table CSVs, figures/)
    and the run folders under ``runs_dir``; the config differences are from ``base`` (a nested
    config dict) when given, else from a run of ``base_experiment``."""
    results_dir = Path(results_dir)
    found = read_claims(results_dir) or {"method": "", "claims": []}
    context = {
        "preset": preset,
        "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "claims_intro": found["method"],
        "claims": found["claims"],
        "verdicts": found.get("verdicts", {}),
        "tables": read_tables(results_dir),
        "figures": figure_list(results_dir),
        **run_list(Path(runs_dir), base, base_experiment),
    }
    path = results_dir / PAGE
    atomic_write_text(path, render(context))
    return path
