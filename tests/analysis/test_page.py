"""The results page of a hand-made preset, rendered in headless Chromium: every claim, table and
figure is on it, the images that exist load, a missing figure and a table's missing rows read
"missing" instead of failing, and the runs show their config difference from the base."""

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from experiments.presets import preset
from gfl_repro.analysis import page
from gfl_repro.analysis.collect import collect_runs, compare_with_paper
from gfl_repro.analysis.report import to_markdown, write_table
from gfl_repro.cli import main
from gfl_repro.config import apply_overrides, to_dict
from gfl_repro.engine.runs import RunFolder

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
ENV = {"git_commit": "0123456789abcdef", "device": "cpu", "processes": 1, "threads": 2,
       "python": "3.11.7", "platform": "Linux", "packages": {"torch": "2.14.1"}}  # fmt: skip


def _claim(title: str, verdict: str | None, seeds: int | None, lines: list[str], **numbers) -> dict:
    """A claim of claims.json (experiments/claims.py); ``numbers`` set mean, low, high, p,
    paper, per_seed or parts, the rest are None or empty."""
    empty = {"mean": None, "low": None, "high": None, "p": None, "paper": None, "per_seed": [],
             "rivals": [], "parts": []}  # fmt: skip
    return {"title": title, "verdict": verdict, "seeds": seeds, "unit": "AP", **empty,
            "lines": lines, **numbers}  # fmt: skip


FCOS = _claim(
    "`t5_fcos` → `t5_fcos_gflv2`", "within noise", 1,
    ["`t5_fcos` 30.0 AP → `t5_fcos_gflv2` 30.5 AP; paper +2.1 AP",
     "seed 0: +0.50 [-0.20, +1.20] (val bootstrap)"],
    mean=0.5, paper=2.1, per_seed=[{"seed": 0, "diff": 0.5, "low": -0.2, "high": 1.2}],
)  # fmt: skip
CLAIMS = {
    "preset": "mini", "bootstrap": 200, "min_seeds": 3, "method": "How the verdicts are reached.",
    "verdicts": {"supported": 1, "within noise": 1, "contradicted": 0, "not run yet": 2},
    "claims": [
        _claim("GFLV2 > GFLV1 in AP (Table 2, k = 0 vs k = 4)", "supported", 3,
               ["`gflv1` 28.0 AP (1 seed)", "over 3 seeds: mean difference +2.00 AP"],
               mean=2.0, low=1.0, high=3.0, p=0.01, paper=0.9),
        _claim("Top-k + Mean is the best input of DGQP (Table 1)", "not run yet", 0,
               ["missing rows: t1_var"], paper=0.2),
        _claim("~2 AP from each transplant of GFLV2 (Table 5)", None, None, [], parts=[
            FCOS,
            _claim("`t5_atss` → `t5_atss_gflv2`", "not run yet", 0, ["missing: t5_atss"]),
        ]),
    ],
}  # fmt: skip


def _run(root: Path, experiment: str, seed: int, quality: str, ap: float | None) -> None:
    run = root / "mini" / experiment / f"seed{seed}"
    run.mkdir(parents=True)
    config = apply_overrides(preset("mini"), [f"model.quality.kind={quality}"])
    (run / "config.json").write_text(json.dumps(to_dict(config)))
    identity = {"preset": "mini", "experiment": experiment, "seed": seed, "rows": [experiment]}
    (run / "env.json").write_text(json.dumps({**ENV, **identity}))
    if ap is not None:  # complete
        metrics = {m: ap for m in METRICS} | {"train_seconds": 5400.0}
        (run / "metrics.json").write_text(json.dumps(metrics))


def _results(runs: Path, out: Path) -> None:
    """main (two complete rows) and table1 (t1_mean started, t1_var never run: missing rows),
    claims.json, and the figures: Fig. 1b and one extra plot drawn, a corrupt PNG, Fig. 9's PDF
    and CSV without its PNG."""
    table = collect_runs(runs / "mini")
    paper = {"gflv1": {"AP": 40.2}, "gflv2": {"AP": 41.1}, "t1_var": {"AP": 40.7}}
    for name, rows in (("main", ["gflv1", "gflv2"]), ("table1", ["t1_mean", "t1_var"])):
        frame = compare_with_paper(table, paper, rows)
        write_table(frame, out, name, to_markdown(frame, list(METRICS), f"Table {name}"))
    (out / "claims.json").write_text(json.dumps(CLAIMS))
    figures = out / "figures"
    figures.mkdir()
    for stem, color in (("fig1b_top1_vs_iou", "navy"), ("extra_plot", "orange")):
        Image.new("RGB", (240, 160), color).save(figures / f"{stem}.png")
    (figures / "corrupt_plot.png").write_bytes(b"not a png")
    for ext in ("pdf", "csv"):
        (figures / f"fig1b_top1_vs_iou.{ext}").write_text("x")
        (figures / f"fig9_dgqp_input_output.{ext}").write_text("x")


class Dom(HTMLParser):
    """The elements of a dumped DOM as (tag, attributes, text up to the next tag)."""

    def __init__(self, text: str):
        super().__init__()
        self.elements: list[list] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.elements.append([tag, dict(attrs), ""])

    def handle_data(self, data):
        if self.elements:
            self.elements[-1][2] += data

    def find(self, tag: str, **attrs) -> list[dict]:
        """The attributes of each ``tag`` with ``attrs`` (class_ for class, data_x for data-x)."""
        want = {k.rstrip("_").replace("_", "-"): v for k, v in attrs.items()}
        return [a for t, a, _ in self.elements if t == tag and want.items() <= a.items()]

    def texts(self, tag: str, **attrs) -> list[str]:
        """The text of each ``tag`` with ``attrs`` up to the next start tag, stripped."""
        want = {k.rstrip("_").replace("_", "-"): v for k, v in attrs.items()}
        return [x.strip() for t, a, x in self.elements if t == tag and want.items() <= a.items()]

    @property
    def text(self) -> str:
        return " ".join(t for *_, t in self.elements)


def _chromium(url: str, *flags: str, profile: Path) -> str:
    # The virtual time budget lets the page's load event (the broken-image check) run first.
    headless = ["--headless", "--disable-gpu", "--no-sandbox", "--virtual-time-budget=5000"]
    command = [CHROMIUM, *headless, f"--user-data-dir={profile}", *flags, url]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """(page path, DOM as Chromium renders it, screenshot path) of the hand-made preset, the
    page written by ``gfl-repro report``."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    root = tmp_path_factory.mktemp("page")
    runs, results = root / "runs", root / "results"
    for seed, ap in enumerate((0.30, 0.32, 0.31)):
        _run(runs, "gflv2", seed, "dgqp", ap)
    _run(runs, "gflv1", 0, "none", 0.28)
    _run(runs, "t1_mean", 0, "dgqp", None)  # started, not complete
    _results(runs, results / "mini")
    assert main(["report", "--preset", "mini", "--runs", str(runs), "--results", str(results)]) == 0
    path = results / "mini" / "index.html"
    dom = Dom(_chromium(path.as_uri(), "--dump-dom", profile=root / "profile"))
    shot = root / "page.png"
    _chromium(path.as_uri(), f"--screenshot={shot}", "--window-size=1200,2000", "--hide-scrollbars",
              profile=root / "profile")  # fmt: skip
    print(f"screenshot: {shot}")
    return path, dom, shot


def test_page_has_claims_first_with_their_verdicts(rendered):
    path, dom, _ = rendered
    sections = [a["id"] for a in dom.find("section")]
    assert sections == ["claims", "tables", "figures", "runs", "environment"]
    claims = [(a["data-verdict"], a.get("data-seeds")) for a in dom.find("article")]
    assert claims == [("supported", "3"), ("not run yet", "0"), ("group", None)]
    parts = [(a["data-verdict"], a["data-seeds"]) for a in dom.find("div", class_="part")]
    assert parts == [("within noise", "1"), ("not run yet", "0")]
    # The seed count is on the page, not only in the attributes.
    shown = dom.texts("span", class_="seeds")
    assert shown == ["(3 seeds)", "(0 seeds)", "(1 seed)", "(0 seeds)"]
    assert "How the verdicts are reached." in dom.text
    # The tally is claims.json's, in its order (ClaimReport.counts).
    spans = [
        x.strip() for t, a, x in dom.elements if t == "span" and "verdict" in a.get("class", "")
    ]
    tally = [x for x in spans if x[:1].isdigit()]  # a claim's own verdict has no count
    assert tally == ["1 supported", "1 within noise", "0 contradicted", "2 not run yet"]
    assert "over 3 seeds: mean difference +2.00 AP" in dom.text
    assert "seed 0: +0.50 [-0.20, +1.20] (val bootstrap)" in dom.text
    # Self-contained: no stylesheet or script to fetch, every link relative to the page.
    assert not dom.find("link") and all("src" not in a for a in dom.find("script"))
    urls = [a["href"] for a in dom.find("a")] + [a["src"] for a in dom.find("img")]
    assert urls and not [u for u in urls if ":" in u or u.startswith("/")]


def test_every_table_with_its_missing_rows(rendered):
    _, dom, _ = rendered
    assert [a["id"] for a in dom.find("div", class_="table")] == ["table-main", "table-table1"]
    assert len(dom.find("tr", class_="missing")) == 2  # t1_mean (incomplete), t1_var (no run)
    assert "31.0 ± 1.00" in dom.text and "paper 41.1 (-10.1)" in dom.text  # 30, 32, 31
    assert "paper 40.7" in dom.text and "missing" in dom.text


def test_every_figure_and_no_broken_image(rendered):
    _, dom, _ = rendered
    assert dom.find("body", data_images_checked="1"), "the load event did not run"
    images = {a["alt"]: a["data-broken"] for a in dom.find("img")}
    assert images == {"fig1b_top1_vs_iou": "0", "extra_plot": "0", "corrupt_plot": "1"}
    figures = {a["id"][4:]: a["data-missing"] for a in dom.find("figure")}
    assert set(page.FIGURES) | {"extra_plot", "corrupt_plot"} == set(figures)
    assert figures["fig1b_top1_vs_iou"] == "0" and figures["fig9_dgqp_input_output"] == "1"
    assert "missing: fig9_dgqp_input_output.png is not drawn yet" in dom.text
    links = {a["href"] for a in dom.find("a")}
    assert {"figures/fig9_dgqp_input_output.pdf", "figures/fig9_dgqp_input_output.csv"} <= links


def test_runs_with_their_config_difference_and_environment(rendered):
    _, dom, shot = rendered
    assert "model.quality.kind=none" in dom.text and "none (the base)" in dom.text
    assert "seed 2: 1.50 h (env 1)" in dom.text and "not complete" in dom.text
    assert "0123456" in dom.text and "torch 2.14.1" in dom.text
    assert shot.stat().st_size > 10_000
    with Image.open(shot) as image:
        assert image.size == (1200, 2000)


def test_environments_name_the_cpu_kernels_or_say_unrecorded(tmp_path):
    cpu = {"model": "AMD EPYC (family 25, model 17)", "capability": "AVX512"}
    folders = []
    for seed, env in enumerate([{**ENV, "cpu": cpu}, ENV, {**ENV, "cpu": cpu}]):
        folder = RunFolder(tmp_path / f"seed{seed}")
        folder.path.mkdir()
        (folder / "env.json").write_text(json.dumps(env))
        folders.append(folder)
    envs, ids = page.environments(folders)
    assert [(e["kernels"], e["runs"]) for e in envs] == [
        ("AVX512, AMD EPYC (family 25, model 17)", 2), ("unrecorded", 1)]  # fmt: skip
    assert [ids[str(f.path)] for f in folders] == [1, 2, 1]


def test_config_diff_as_set_items():
    base = page.flatten({"model": {"quality": {"kind": "dgqp", "statistics": ["topk", "mean"]}},
                         "runtime": {"amp": "none"}})  # fmt: skip
    mine = page.flatten({"model": {"quality": {"kind": "dgqp", "statistics": ["topk"]}},
                         "data": {"flip": True}})  # fmt: skip
    assert page.config_diff(mine, base) == ["model.quality.statistics=topk", "data.flip=true",
                                            "runtime.amp absent"]  # fmt: skip


def test_a_preset_with_nothing_yet_renders_as_missing(tmp_path):
    # A claims.md without claims.json (written before claims.json existed) is not parsed.
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "claims.md").write_text("## A claim: **supported**\n")
    text = page.build_page(tmp_path / "runs", tmp_path / "results", "mini").read_text()
    assert "missing: no claims.json in this results folder yet" in text
    assert 'data-verdict="supported"' not in text
    assert "missing: no table in this results folder yet" in text
    assert "missing: no run folder yet" in text
    assert text.count('data-missing="1"') == len(page.FIGURES)


def test_captions_of_known_figures_training_curves_and_others():
    assert page.caption("fig7_nms").startswith("Fig. 7.")
    assert page.caption("curves_gflv2_seed1").startswith("Training curves of gflv2_seed1:")
    assert page.caption("extra_plot") == "extra_plot"
