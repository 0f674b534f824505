"""The paper's claims checked against the run folders of a preset: results/<preset>/claims.md
to read and claims.json for programs (the results page), both written from one ``ClaimReport``.

A claim compares two rows: b beats a. For each training seed both rows have, the paired
difference on the val set comes with a percentile bootstrap interval over the val images (AP) or
the val positives (PCC). Across seeds, the verdict rests on a Student-t interval of the mean
difference (n - 1 degrees of freedom) whose standard error holds both noises: the seed-to-seed
variance of the mean, s^2 / n, plus the bootstrap variance of the mean over the val sample
(``stats.seed_interval``). "supported" or "contradicted" needs the whole 95 % interval on one side
of 0 and at least ``MIN_SEEDS`` seeds; with fewer, training noise is not measured and the claim
says so ("not enough seeds") with its per-seed numbers.

A "best row" claim (the paper's winner of a table) compares the winner with every rival row and
counts the rivals it is significantly better than, worse than, or indistinguishable from, with
Holm's correction over the rivals (family-wise 5 %): picking the runner-up by its noisy mean
would be biased against the winner. It is supported when the winner beats every rival,
contradicted when some rival beats it.

A row's runs are the run folders that record standing for it (``tables.RowIndex``, from each
folder's env.json); rows of different tables with one config share those folders.

claims.json: {"preset", "bootstrap" (resamples), "min_seeds", "method" (the text under the
heading of claims.md), "verdicts" (how many claims have each verdict, as ``ClaimReport.counts``),
"claims": [claim]}. A claim: {"title", "verdict" (None for a group such as
Table 5's, whose "parts" carry the verdicts), "seeds" (that the verdict rests on; 0 when not run,
None for a group), "unit" ("AP" or "PCC"), "mean", "low", "high", "p" (the mean difference b - a
over the seeds and its 95 % interval; low, high and p None with one seed), "paper" (the paper's
difference), "per_seed": [{"seed", "diff", "low", "high"}] (each seed's difference and bootstrap
interval), "rivals" (a best-row claim's numbers, per rival: [{"row", "outcome" ("better": the
winner significantly better, "worse", "tied"; None with too few seeds), "p_holm", "seeds",
"mean", "low", "high", "p", "per_seed"}]), "lines" (its text in claims.md), "parts" (claims of
this shape)}. A number not measured is None (null).
"""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from experiments.paper import PAPER
from experiments.registry import table
from experiments.tables import RowIndex
from gfl_repro.analysis.stats import (
    MIN_SEEDS,
    NOT_ENOUGH_SEEDS,
    SeedInterval,
    holm,
    image_weights,
    load_gt,
    match,
    match_table,
    mean_std,
    paired_ap_draws,
    pearson,
    seed_interval,
    verdict_over_seeds,
)
from gfl_repro.engine.lqe import load_lqe
from gfl_repro.engine.runs import RunFolder
from gfl_repro.io import atomic_write_json, atomic_write_text

NOT_RUN = "not run yet"
ALPHA = 0.05  # the family-wise error rate of a best-row claim, and 1 - the interval level


@dataclass
class Comparison:
    """b - a over the seeds both rows have: per seed the difference on the full val sample and
    its bootstrap interval, across seeds the interval of the mean (None with one seed)."""

    seeds: list[int]
    diffs: np.ndarray  # (S,)
    lows: np.ndarray  # (S,)
    highs: np.ndarray  # (S,)
    interval: SeedInterval | None

    @classmethod
    def from_draws(cls, seeds: list[int], diffs: np.ndarray, draws: np.ndarray) -> "Comparison":
        """``draws`` (R, S): the difference under each resample of the val sample, per seed."""
        lows, highs = np.percentile(draws, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)], axis=0)
        sample_var = float(draws.mean(axis=1).var(ddof=1))  # of the mean over seeds
        interval = seed_interval(diffs, sample_var, 1 - ALPHA) if len(seeds) > 1 else None
        return cls(seeds, diffs, lows, highs, interval)

    @property
    def verdict(self) -> str:
        return verdict_over_seeds(self.interval) if self.interval else NOT_ENOUGH_SEEDS

    def summary(self, unit: str = "AP", digits: int = 2) -> str:
        n = len(self.seeds)
        if n < MIN_SEEDS:
            mean = float(np.mean(self.diffs))
            return (f"{_seeds(n)}: training noise not measured; "
                    f"mean difference {mean:+.{digits}f} {unit}")  # fmt: skip
        i = self.interval
        return (
            f"over {n} seeds: mean difference {i.mean:+.{digits}f} {unit}, std of the difference "
            f"{i.std:.{digits}f}; 95 % interval [{i.low:+.{digits}f}, {i.high:+.{digits}f}] "
            f"(t, {n - 1} df, seed and val-sample noise), p = {i.p:.3g}"
        )

    def record(self) -> dict:
        """The numbers of claims.json (module docstring), ``seeds`` a count."""
        i = self.interval
        per_seed = zip(self.seeds, self.diffs, self.lows, self.highs, strict=True)
        return {
            "seeds": len(self.seeds),
            "mean": _number(i.mean if i else np.mean(self.diffs)),
            **{k: _number(getattr(i, k)) if i else None for k in ("low", "high", "p")},
            "per_seed": [{"seed": int(s), "diff": _number(d), "low": _number(lo),
                          "high": _number(hi)} for s, d, lo, hi in per_seed],
        }  # fmt: skip

    def per_seed(self, digits: int = 2) -> list[str]:
        return [
            f"seed {s}: {d:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}] (val bootstrap)"
            for s, d, lo, hi in zip(self.seeds, self.diffs, self.lows, self.highs, strict=True)
        ]


def _seeds(n: int) -> str:
    """'1 seed', 'n seeds'."""
    return f"{n} seed{'s' * (n != 1)}"


def _number(x) -> float | None:
    """A float for claims.json: None where not finite (JSON has no NaN)."""
    return float(x) if np.isfinite(x) else None


@dataclass
class Rival:
    """A rival row of a best-row claim: AP(winner) - AP(rival), its Holm-adjusted p-value and
    the outcome for the winner ("better", "worse", "tied"; None with too few seeds for either)."""

    comparison: Comparison
    p_holm: float | None = None
    outcome: str | None = None

    def record(self) -> dict:
        p_holm = None if self.p_holm is None else _number(self.p_holm)
        return {"outcome": self.outcome, "p_holm": p_holm, **self.comparison.record()}


@dataclass
class Claim:
    """One claim: claims.md shows its title, verdict and lines; claims.json holds them with the
    numbers they were written from. A group (verdict None) is a title over its parts."""

    title: str
    verdict: str | None
    lines: list[str] = field(default_factory=list)
    unit: str = "AP"
    paper: float | None = None  # the paper's difference, in ``unit``
    comparison: Comparison | None = None  # b - a; None when not run, for a best row or a group
    rivals: dict[str, Rival] = field(default_factory=dict)  # a best-row claim's, by row
    parts: list["Claim"] = field(default_factory=list)
    best_row: bool = False  # the paper's winner against every rival; ``paper`` its margin

    @property
    def seeds(self) -> int | None:
        """The seeds the verdict rests on: for a best row, the fewest any rival shares with the
        winner; 0 when not run, None for a group."""
        if self.verdict is None:
            return None
        comps = [r.comparison for r in self.rivals.values()] or [self.comparison]
        return min((len(c.seeds) for c in comps if c), default=0)

    def record(self) -> dict:
        """The claim in claims.json (module docstring)."""
        numbers = self.comparison.record() if self.comparison else {"per_seed": []}
        return {
            "title": self.title,
            "verdict": self.verdict,
            "seeds": self.seeds,
            "unit": self.unit,
            **{k: numbers.get(k) for k in ("mean", "low", "high", "p")},
            "paper": self.paper,
            "per_seed": numbers["per_seed"],
            "rivals": [{"row": n, **r.record()} for n, r in self.rivals.items()],
            "lines": self.lines,
            "parts": [c.record() for c in self.parts],
        }

    def seed_count(self) -> str:
        return _seeds(self.seeds)

    def measured(self) -> str:
        """Our number in the summary table: the mean difference b - a with its 95 % interval
        over the seeds (the mean alone under ``MIN_SEEDS``), a best row's outcome against its
        rivals with the range of its mean differences to them, or "–" when not run."""
        digits = 3 if self.unit == "PCC" else 2
        if self.rivals:
            outcomes = Counter(r.outcome for r in self.rivals.values())
            if None in outcomes:
                return "–"
            means = [np.mean(r.comparison.diffs) for r in self.rivals.values()]
            span = f"{min(means):+.{digits}f} to {max(means):+.{digits}f} {self.unit}"
            n = len(self.rivals)
            return (f"beats {outcomes['better']}, loses to {outcomes['worse']}, "
                    f"ties {outcomes['tied']} of {n} rivals; winner − rival {span}")  # fmt: skip
        c = self.comparison
        if c is None:
            return "–"
        if c.interval is None or len(c.seeds) < MIN_SEEDS:
            return f"{np.mean(c.diffs):+.{digits}f} {self.unit} (no interval)"
        i = c.interval
        return f"{i.mean:+.{digits}f} [{i.low:+.{digits}f}, {i.high:+.{digits}f}] {self.unit}"

    def paper_text(self) -> str:
        if self.paper is None:
            return "–"
        text = f"{self.paper:+.{3 if self.unit == 'PCC' else 1}f} {self.unit}"
        return text + " over the runner-up" if self.best_row else text

    def markdown(self) -> str:
        """A section of claims.md: "## title: **verdict** (n seeds)" and a "- " line per line; a
        group's parts as "- title: **verdict** (n seeds); first line" with their other lines
        beneath."""
        if self.verdict is not None:
            lines = [f"- {line}" for line in self.lines]
            head = f"## {self.title}: **{self.verdict}** ({self.seed_count()})"
            return "\n".join([head, "", *lines, ""])
        out = [f"## {self.title}", ""]
        for part in self.parts:
            first, *rest = part.lines
            head = f"- {part.title}: **{part.verdict}** ({part.seed_count()}); {first}"
            out += [head, *[f"  - {x}" for x in rest]]
        return "\n".join([*out, ""])


@dataclass
class ClaimReport:
    """Every claim at a preset, and how its verdicts were reached: claims.md and claims.json."""

    preset: str
    n_boot: int
    claims: list[Claim]

    def leaves(self) -> list[tuple[str, Claim]]:
        """(title, claim) of every claim with a verdict: a group's parts one by one, titled
        with the group's table."""
        out = []
        for c in self.claims:
            if c.verdict is not None:
                out.append((c.title, c))
            table_of = c.title[c.title.rfind("(") + 1 : -1]  # "(Table 5)" -> "Table 5"
            out += [(f"{table_of}: {p.title}", p) for p in c.parts]
        return out

    def counts(self) -> dict[str, int]:
        """How many claims have each verdict (a group's parts counted one by one); supported,
        within noise and contradicted always, the others where some claim has them."""
        found = Counter(c.verdict for _, c in self.leaves())
        order = ["supported", "within noise", "contradicted", NOT_ENOUGH_SEEDS, NOT_RUN]
        return {v: found[v] for v in order if v in order[:3] or found[v]}

    def summary(self) -> str:
        """The table at the top of claims.md: every claim's verdict and the seeds it rests
        on."""
        counts = ", ".join(f"{n} {v}" for v, n in self.counts().items())
        out = [
            "## Summary",
            "",
            f"{len(self.leaves())} claims: {counts}.",
            "",
            "| Claim | Verdict | Seeds | Ours: b − a, 95 % interval over seeds | Paper |",
            "|---|---|---|---|---|",
        ]
        for title, c in self.leaves():
            out.append(f"| {title} | {c.verdict} | {c.seeds} | {c.measured()} | "
                       f"{c.paper_text()} |")  # fmt: skip
        return "\n".join([*out, ""])

    def markdown(self) -> str:
        heading = f"# The paper's claims at preset `{self.preset}`\n\n{method(self.n_boot)}\n"
        return "\n".join([heading, self.summary(), *(c.markdown() for c in self.claims)])

    def record(self) -> dict:
        return {
            "preset": self.preset,
            "bootstrap": self.n_boot,
            "min_seeds": MIN_SEEDS,
            "method": method(self.n_boot),
            "verdicts": self.counts(),
            "claims": [c.record() for c in self.claims],
        }

    def write(self, folder: str | Path) -> tuple[Path, Path]:
        """``folder``/claims.md and claims.json (results/<preset>/)."""
        md, js = Path(folder) / "claims.md", Path(folder) / "claims.json"
        atomic_write_text(md, self.markdown())
        atomic_write_json(js, self.record())
        return md, js


class Checker:
    """Finds the complete seeds of a row and compares rows over the seeds they share. The run
    folders are indexed by the rows they record once per report (``RowIndex``), the val gt is
    loaded and each run's detections matched once; every comparison uses the same ``n_boot``
    resamples of the val images."""

    def __init__(self, runs_root: str | Path, preset: str, ann_file: str | Path, n_boot: int):
        self.root, self.preset = Path(runs_root) / preset, preset
        self.index = RowIndex(self.root, preset)
        self.ann_file, self.n_boot = ann_file, n_boot
        self._gt, self._weights, self._tables = None, None, {}

    def seeds(self, name: str) -> dict[int, Path]:
        """Complete runs (metrics.json present) standing for row ``name``, by seed."""
        runs = sorted(self.index.runs(name), key=lambda r: r.path)
        return {int(r.identity["seed"]): r.path for r in runs if r.is_complete}

    def ap_summary(self, name: str) -> str:
        aps = [_ap(run) for run in self.seeds(name).values()]
        mean, std = mean_std(aps)
        spread = f" ± {std:.2f}" if np.isfinite(std) else ""
        return f"`{name}` {mean:.1f}{spread} AP ({_seeds(len(aps))})"

    def _match(self, run: Path):
        if run not in self._tables:
            if self._gt is None:
                self._gt = load_gt(self.ann_file)
            self._tables[run] = match_table(match(self._gt, run / RunFolder.DETECTIONS))
        return self._tables[run]

    def paired(self, a: str, b: str) -> Comparison | None:
        """AP(b) - AP(a) over the seeds both rows have; None when they share none."""
        runs_a, runs_b = self.seeds(a), self.seeds(b)
        common = sorted(set(runs_a) & set(runs_b))
        if not common:
            return None
        pairs = [(self._match(runs_a[s]), self._match(runs_b[s])) for s in common]
        if self._weights is None:
            self._weights = image_weights(pairs[0][0].npig.shape[1], self.n_boot)  # (R, I)
        diffs, draws = paired_ap_draws(pairs, self._weights)  # (S,), (R, S)
        return Comparison.from_draws(common, diffs, draws)


def _ap(run: Path) -> float:
    return 100 * RunFolder(run).metrics["AP"]


def _missing(check: Checker, names: list[str]) -> list[str]:
    return [n for n in names if not check.seeds(n)]


def main_claim(check: Checker) -> Claim:
    title = "GFLV2 > GFLV1 in AP (Table 2, k = 0 vs k = 4)"
    paper = round(PAPER["2"]["t2_k4_p64"]["AP"] - PAPER["2"]["t2_k0"]["AP"], 1)
    missing = _missing(check, ["gflv1", "gflv2"])
    comp = None if missing else check.paired("gflv1", "gflv2")
    if comp is None:
        why = ", ".join(missing) or "a common seed"
        return Claim(title, NOT_RUN, [f"missing: {why}"], paper=paper)
    lines = [check.ap_summary("gflv1"), check.ap_summary("gflv2"), comp.summary(),
             *comp.per_seed(), f"paper: {paper:+.1f} AP"]  # fmt: skip
    return Claim(title, comp.verdict, lines, paper=paper, comparison=comp)


def gflv2_vs_gflv1(check: Checker) -> str:
    """The main claim's section of claims.md (analysis/main_result.py prints it)."""
    return main_claim(check).markdown()


def best_row(check: Checker, title: str, number: str, winner: str, rivals: list[str]) -> Claim:
    """The claim that ``winner`` has the highest AP of the rows ``rivals`` of Table ``number``:
    the winner against each rival, Holm-corrected over the rivals."""
    own = check.index.experiment(winner)
    others = [n for n in rivals if check.index.experiment(n) != own]  # not the winner's own runs
    paper = PAPER[number]
    gap = round(paper[winner]["AP"] - max(paper[n]["AP"] for n in others), 1)
    missing = _missing(check, [winner, *others])
    comps = {} if missing else {n: check.paired(n, winner) for n in others}
    if missing or None in comps.values():
        why = ", ".join(missing) or "a common seed"
        return Claim(title, NOT_RUN, [f"missing rows: {why}"], paper=gap, best_row=True)
    fewest = min(len(c.seeds) for c in comps.values())
    if fewest < MIN_SEEDS:
        verdict, found = NOT_ENOUGH_SEEDS, {n: Rival(c) for n, c in comps.items()}
        lines = [check.ap_summary(winner), f"{fewest} seed(s) in common with some rival: training "
                 "noise not measured; per rival, AP(winner) − AP(rival) per seed:"]  # fmt: skip
        for name, c in comps.items():
            seeds = ", ".join(f"seed {s} {d:+.2f}" for s, d in zip(c.seeds, c.diffs, strict=True))
            lines.append(f"vs {check.ap_summary(name)}: {seeds}")
    else:
        verdict, found, lines = _holm_rivals(check, winner, comps)
    lines.append(f"paper: {gap:+.1f} AP over the runner-up")
    return Claim(title, verdict, lines, paper=gap, rivals=found, best_row=True)


def _holm_rivals(check: Checker, winner: str, comps: dict[str, Comparison]):
    """(verdict, rivals, lines) of a best-row claim whose rivals all share ``MIN_SEEDS`` seeds
    with the winner: a rival is significantly better or worse at Holm p < ``ALPHA``."""
    adjusted = holm([c.interval.p for c in comps.values()])  # (m,)
    found, lines = {}, []
    word = {"better": "winner better", "worse": "rival better", "tied": "indistinguishable"}
    for (name, c), p_holm in zip(comps.items(), adjusted, strict=True):
        i, seeds = c.interval, ", ".join(f"{d:+.2f}" for d in c.diffs)
        outcome = ("better" if i.mean > 0 else "worse") if p_holm < ALPHA else "tied"
        found[name] = Rival(c, float(p_holm), outcome)
        lines.append(f"vs {check.ap_summary(name)}: {i.mean:+.2f} [{i.low:+.2f}, {i.high:+.2f}], "
                     f"p = {i.p:.3g}, Holm p = {p_holm:.3g} → {word[outcome]} "
                     f"(per seed {seeds})")  # fmt: skip
    counts = Counter(r.outcome for r in found.values())
    verdict = "supported" if counts["better"] == len(comps) else "within noise"
    verdict = "contradicted" if counts["worse"] else verdict
    head = [
        check.ap_summary(winner),
        f"against {len(comps)} rivals (Holm over {len(comps)}, family-wise {100 * ALPHA:.0f} %): "
        f"significantly better than {counts['better']}, worse than {counts['worse']}, "
        f"indistinguishable from {counts['tied']}",
    ]
    return verdict, found, [*head, *lines]


def transplants(check: Checker) -> Claim:
    """Table 5: each detector with and without GFLV2's head, one verdict per pair (a part)."""
    parts, rows = [], [e.name for e in table("5")]
    for base, plus in zip(rows[::2], rows[1::2], strict=True):
        title = f"`{base}` → `{plus}`"
        paper = round(PAPER["5"][plus]["AP"] - PAPER["5"][base]["AP"], 1)
        missing = _missing(check, [base, plus])
        comp = None if missing else check.paired(base, plus)
        if comp is None:
            why = ", ".join(missing) or "a common seed"
            parts.append(Claim(title, NOT_RUN, [f"missing: {why}"], paper=paper))
            continue
        summary = f"{check.ap_summary(base)} → {check.ap_summary(plus)}; paper {paper:+.1f} AP"
        lines = [summary, comp.summary(), *comp.per_seed()]
        parts.append(Claim(title, comp.verdict, lines, paper=paper, comparison=comp))
    return Claim("~2 AP from each transplant of GFLV2 (Table 5)", None, parts=parts)


def pcc_diff(a, b, n: int = 1000, seed: int = 0) -> dict:
    """PCC(b) − PCC(a) of (joint, iou) with a percentile bootstrap interval (95 %) and its
    draws (R,), resampling each dump's samples independently (the two runs' positives need not
    be the same set)."""
    rng = np.random.default_rng(seed)
    xa, ya = a["joint"].to_numpy(), a["iou"].to_numpy()  # (Na,)
    xb, yb = b["joint"].to_numpy(), b["iou"].to_numpy()  # (Nb,)
    draws = np.empty(n)  # (R,)
    for r in range(n):
        ia, ib = rng.integers(0, len(xa), len(xa)), rng.integers(0, len(xb), len(xb))
        draws[r] = pearson(xb[ib], yb[ib]) - pearson(xa[ia], ya[ia])
    low, high = np.percentile(draws, [2.5, 97.5])
    diff = pearson(xb, yb) - pearson(xa, ya)
    return {"diff": diff, "low": float(low), "high": float(high), "draws": draws}


def pcc_claim(check: Checker, n_boot: int = 1000) -> Claim:
    title = "Higher PCC of J with the IoU with DGQP (Table 6, GFLV2 vs GFLV1)"
    a, b = "t6_gflv1", "t6_gflv2"
    paper = round(PAPER["6"][b]["PCC"] - PAPER["6"][a]["PCC"], 3)
    dumps = {n: {s: r for s, r in check.seeds(n).items() if RunFolder(r).lqe_file().is_file()}
             for n in (a, b)}  # fmt: skip
    common = sorted(set(dumps[a]) & set(dumps[b]))
    if not common:
        lines = ["no seed with lqe.npz for both GFLV1 and GFLV2"]
        return Claim(title, NOT_RUN, lines, unit="PCC", paper=paper)
    lines, diffs, draws = [], [], []
    for s in common:
        lqe_a, lqe_b = load_lqe(dumps[a][s]), load_lqe(dumps[b][s])
        r = pcc_diff(lqe_a, lqe_b, n=n_boot, seed=s)
        diffs.append(r["diff"])
        draws.append(r["draws"])
        lines.append(
            f"seed {s}: PCC GFLV1 {pearson(lqe_a['joint'], lqe_a['iou']):.3f} (N = {len(lqe_a)}), "
            f"GFLV2 {pearson(lqe_b['joint'], lqe_b['iou']):.3f} (N = {len(lqe_b)}); "
            f"difference {r['diff']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}] (positives bootstrap)"
        )
    comp = Comparison.from_draws(common, np.array(diffs), np.stack(draws, axis=1))  # (R, S)
    ends = f"paper: {PAPER['6'][a]['PCC']:.3f} → {PAPER['6'][b]['PCC']:.3f}"
    lines = [comp.summary("PCC", 3), *lines, ends]
    return Claim(title, comp.verdict, lines, unit="PCC", paper=paper, comparison=comp)


def check_claims(runs_root: str | Path, preset: str, ann_file: str | Path,
                 n_boot: int = 200) -> ClaimReport:  # fmt: skip
    """Every claim at ``preset``; ``n_boot`` bootstrap resamples of the val images (the same for
    every comparison) and of each run's val positives (PCC)."""
    check = Checker(runs_root, preset, ann_file, n_boot)
    t1, t2, t3, t4 = ([e.name for e in table(t)] for t in ("1", "2", "3", "4"))
    found = [
        main_claim(check),
        best_row(check, "Top-k + Mean is the best input of DGQP (Table 1)", "1",
                 "t1_topk_mean", t1),
        best_row(check, "k = 4, p = 64 is the best DGQP setting (Table 2)", "2", "t2_k4_p64",
                 [n for n in t2 if n != "t2_k0"]),  # k = 0 is GFLV1, no DGQP: the first claim
        # Against the convolutional inputs (a)-(g); the baseline without a quality branch is
        # no rival of the claim "statistics are the best input".
        best_row(check, "Distribution statistics beat convolutional features as the input of "
                 "the quality branch (Table 3)", "3", "t3_distribution",
                 [n for n in t3 if n not in ("t3_atss_star", "t3_distribution")]),
        best_row(check, "Decomposed J = C x I beats the composed form (Table 4)", "4",
                 "t4_decomposed", [n for n in t4 if n.startswith("t4_composed")]),
        transplants(check),
        pcc_claim(check, n_boot),
    ]  # fmt: skip
    return ClaimReport(preset, n_boot, found)


def claims(runs_root: str | Path, preset: str, ann_file: str | Path, n_boot: int = 200) -> str:
    """The Markdown of ``check_claims`` (claims.md); ``ClaimReport.write`` writes it with
    claims.json."""
    return check_claims(runs_root, preset, ann_file, n_boot).markdown()


def method(n_boot: int) -> str:
    """How the verdicts are reached: the text under the heading of claims.md."""
    return (
        "AP in percent on the preset's val set; a claim is that the second row beats the first. "
        "Per seed: the paired difference with a 95 % percentile bootstrap interval "
        f"({n_boot} resamples of the val images, the same draws for both runs and every seed; "
        "of the val positives for the PCC). Across seeds: a 95 % Student-t interval of the mean "
        "difference, n − 1 degrees of freedom, whose squared standard error is the seed-to-seed "
        "variance of the mean (s² / n) plus the bootstrap variance of the mean over the val "
        "sample, so it holds training noise and the choice of val images. "
        f'"supported" or "contradicted" needs at least {MIN_SEEDS} seeds and the interval '
        f'entirely above or below 0; otherwise "within noise". With fewer seeds the claim says '
        f'"{NOT_ENOUGH_SEEDS}" (training noise not measured) and gives its per-seed numbers. '
        "A best-row claim compares the paper's winner with every rival row: a rival counts as "
        "significantly better or worse when its Holm-adjusted p-value (over the table's rivals, "
        "family-wise 5 %) is below 0.05; the claim is supported when the winner beats every "
        "rival and contradicted when any rival beats it."
    )
