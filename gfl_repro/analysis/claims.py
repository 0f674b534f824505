"""The paper's claims checked against the run folders of a preset, as Markdown (claims.md).

Each claim gets a verdict from ``stats.verdict``: "supported", "within noise" or "contradicted",
or "not run yet" when a run it needs has no complete seed (nothing is filled in). AP claims use
the paired bootstrap over val images (``paired_bootstrap_ap``) on each seed both runs share; the
verdicts of several seeds combine into "supported" (or "contradicted") only when every seed agrees.
That interval covers the choice of val images, not training noise: the mean ± std over seeds is
printed beside it for that. Rows of different tables that resolve to the same config share one
run folder, ``runs/<preset>/<canonical name>/seed<S>``.
"""

import json
from pathlib import Path

import numpy as np

from experiments.paper import PAPER
from experiments.registry import canonical_name, table
from gfl_repro.analysis.lqe import load_lqe
from gfl_repro.analysis.stats import mean_std, paired_bootstrap_ap, pearson, verdict

NOT_RUN = "not run yet"


class Checker:
    """Finds the complete seeds of an experiment and caches the paired bootstraps of a report."""

    def __init__(self, runs_root: str | Path, preset: str, ann_file: str | Path, n_boot: int):
        self.root, self.preset = Path(runs_root) / preset, preset
        self.ann_file, self.n_boot = ann_file, n_boot
        self._paired: dict[tuple[Path, Path], dict[str, float]] = {}

    def seeds(self, name: str) -> dict[int, Path]:
        """Complete runs (metrics.json present) of ``name``'s canonical folder, by seed."""
        folder = self.root / canonical_name(name, self.preset)
        runs = {}
        for metrics in sorted(folder.glob("seed*/metrics.json")):
            env = json.loads((metrics.parent / "env.json").read_text())
            runs[int(env["seed"])] = metrics.parent
        return runs

    def ap_summary(self, name: str) -> str:
        aps = [_ap(run) for run in self.seeds(name).values()]
        mean, std = mean_std(aps)
        spread = f" ± {std:.2f}" if np.isfinite(std) else ""
        return f"`{name}` {mean:.1f}{spread} AP ({len(aps)} seed{'s' * (len(aps) != 1)})"

    def paired(self, a: str, b: str) -> tuple[str, list[str]]:
        """Verdict on AP(b) > AP(a) over the seeds both have, and one line per seed."""
        runs_a, runs_b = self.seeds(a), self.seeds(b)
        common = sorted(set(runs_a) & set(runs_b))
        if not common:
            return NOT_RUN, [f"no seed in common between `{a}` and `{b}`"]
        lines, verdicts = [], []
        for s in common:
            key = (runs_a[s] / "detections.json", runs_b[s] / "detections.json")
            if key not in self._paired:
                self._paired[key] = paired_bootstrap_ap(self.ann_file, *key, n=self.n_boot, seed=s)
            r = self._paired[key]
            verdicts.append(verdict(r["diff"], r["low"], r["high"]))
            lines.append(
                f"seed {s}: AP(`{b}`) − AP(`{a}`) = {r['diff']:+.2f} "
                f"[{r['low']:+.2f}, {r['high']:+.2f}] → {verdicts[-1]}"
            )
        return _combine(verdicts), lines


def _ap(run: Path) -> float:
    return 100 * json.loads((run / "metrics.json").read_text())["AP"]


def _combine(verdicts: list[str]) -> str:
    return verdicts[0] if len(set(verdicts)) == 1 else "within noise"


def _section(title: str, result: str, lines: list[str]) -> str:
    return "\n".join([f"## {title}: **{result}**", "", *[f"- {line}" for line in lines], ""])


def gflv2_vs_gflv1(check: Checker) -> str:
    title = "GFLV2 > GFLV1 in AP (Table 2, k = 0 vs k = 4)"
    paper = PAPER["2"]["t2_k4_p64"]["AP"] - PAPER["2"]["t2_k0"]["AP"]
    missing = [n for n in ("gflv1", "gflv2") if not check.seeds(n)]
    if missing:
        return _section(title, NOT_RUN, [f"missing: {', '.join(missing)}"])
    result, lines = check.paired("gflv1", "gflv2")
    lines = [check.ap_summary("gflv1"), check.ap_summary("gflv2"), *lines]
    return _section(title, result, [*lines, f"paper: {paper:+.1f} AP"])


def best_row(check: Checker, title: str, number: str, winner: str, rivals: list[str]) -> str:
    """The claim that ``winner`` has the highest AP of ``rivals`` (rows of Table ``number``):
    paired bootstrap of the winner against the best other row (the runner-up)."""
    missing = [n for n in [winner, *rivals] if not check.seeds(n)]
    if missing:
        return _section(title, NOT_RUN, [f"missing rows: {', '.join(missing)}"])
    own = canonical_name(winner, check.preset)
    others = [n for n in rivals if canonical_name(n, check.preset) != own]
    mean_ap = {n: float(np.mean([_ap(r) for r in check.seeds(n).values()])) for n in others}
    runner_up = max(mean_ap, key=mean_ap.get)
    result, lines = check.paired(runner_up, winner)
    paper = PAPER[number]
    gap = paper[winner]["AP"] - max(paper[n]["AP"] for n in others)
    head = [check.ap_summary(winner), f"runner-up: {check.ap_summary(runner_up)}"]
    return _section(title, result, [*head, *lines, f"paper: {gap:+.1f} AP over the runner-up"])


def transplants(check: Checker) -> str:
    """Table 5: each detector with and without GFLV2's head, one verdict per pair."""
    out = ["## ~2 AP from each transplant of GFLV2 (Table 5)", ""]
    rows = [e.name for e in table("5")]
    for base, plus in zip(rows[::2], rows[1::2], strict=True):
        paper = PAPER["5"][plus]["AP"] - PAPER["5"][base]["AP"]
        missing = [n for n in (base, plus) if not check.seeds(n)]
        if missing:
            out.append(f"- `{base}` → `{plus}`: **{NOT_RUN}** (missing: {', '.join(missing)})")
            continue
        result, lines = check.paired(base, plus)
        summary = f"{check.ap_summary(base)} → {check.ap_summary(plus)}"
        out.append(f"- `{base}` → `{plus}`: **{result}**; {summary}; paper {paper:+.1f} AP")
        out += [f"  - {line}" for line in lines]
    return "\n".join(out) + "\n"


def pcc_diff(a, b, n: int = 1000, seed: int = 0) -> dict[str, float]:
    """PCC(b) − PCC(a) of (joint, iou) with a percentile bootstrap interval (95 %), resampling
    each dump's samples independently (the two runs' positives need not be the same set)."""
    rng = np.random.default_rng(seed)
    xa, ya = a["joint"].to_numpy(), a["iou"].to_numpy()  # (Na,)
    xb, yb = b["joint"].to_numpy(), b["iou"].to_numpy()  # (Nb,)
    draws = np.empty(n)  # (R,)
    for r in range(n):
        ia, ib = rng.integers(0, len(xa), len(xa)), rng.integers(0, len(xb), len(xb))
        draws[r] = pearson(xb[ib], yb[ib]) - pearson(xa[ia], ya[ia])
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"diff": pearson(xb, yb) - pearson(xa, ya), "low": float(low), "high": float(high)}


def pcc_claim(check: Checker) -> str:
    title = "Higher PCC of J with the IoU with DGQP (Table 6, GFLV2 vs GFLV1)"
    a, b = "t6_gflv1", "t6_gflv2"
    dumps = {n: {s: r for s, r in check.seeds(n).items() if (r / "lqe.npz").is_file()}
             for n in (a, b)}  # fmt: skip
    common = sorted(set(dumps[a]) & set(dumps[b]))
    if not common:
        return _section(title, NOT_RUN, ["no seed with lqe.npz for both GFLV1 and GFLV2"])
    paper = PAPER["6"]
    lines, verdicts = [], []
    for s in common:
        lqe_a, lqe_b = load_lqe(dumps[a][s]), load_lqe(dumps[b][s])
        r = pcc_diff(lqe_a, lqe_b, seed=s)
        verdicts.append(verdict(r["diff"], r["low"], r["high"]))
        lines.append(
            f"seed {s}: PCC GFLV1 {pearson(lqe_a['joint'], lqe_a['iou']):.3f} (N = {len(lqe_a)}), "
            f"GFLV2 {pearson(lqe_b['joint'], lqe_b['iou']):.3f} (N = {len(lqe_b)}); "
            f"difference {r['diff']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}] → {verdicts[-1]}"
        )
    lines.append(f"paper: {paper[a]['PCC']:.3f} → {paper[b]['PCC']:.3f}")
    return _section(title, _combine(verdicts), lines)


def claims(runs_root: str | Path, preset: str, ann_file: str | Path, n_boot: int = 200) -> str:
    """Markdown for ``results/<preset>/claims.md``; ``n_boot`` bootstrap resamples of the val
    images per paired AP comparison."""
    check = Checker(runs_root, preset, ann_file, n_boot)
    t1, t2, t4 = ([e.name for e in table(t)] for t in ("1", "2", "4"))
    sections = [
        gflv2_vs_gflv1(check),
        best_row(check, "Top-k + Mean is the best input of DGQP (Table 1)", "1",
                 "t1_topk_mean", t1),
        best_row(check, "k = 4, p = 64 is the best DGQP setting (Table 2)", "2", "t2_k4_p64",
                 [n for n in t2 if n != "t2_k0"]),  # k = 0 is GFLV1, no DGQP: the first claim
        best_row(check, "Decomposed J = C x I beats the composed form (Table 4)", "4",
                 "t4_decomposed", [n for n in t4 if n.startswith("t4_composed")]),
        transplants(check),
        pcc_claim(check),
    ]  # fmt: skip
    head = (
        f"# The paper's claims at preset `{preset}`\n\n"
        "AP in percent on the preset's val set. Intervals: 95 % percentile bootstrap "
        f"({n_boot} resamples of the val images, paired between the two runs of a seed). "
        "They cover the val-image sample, not training noise; mean ± std over seeds is given "
        'for that. A verdict over several seeds is "supported" or "contradicted" only when '
        "every seed agrees.\n"
    )
    return "\n".join([head, *sections])
