"""Run records: a complete run folder without its checkpoints, one ``.tar.xz`` per run.

Analysis reads only run folders, so a run's record (metrics, detections, LQE dumps, logs and
bench files) is all a table or a claim needs. Left out: the ``*.pth`` checkpoints, except that
seed 0 keeps its last one, so that every experiment keeps a trained model (for bench-model,
whose timing includes post-processing and so depends on the weights, for the example figures,
``test`` and ``predict``); and ``examples/``, which the probe writes again from that checkpoint.
``pack`` writes ``<dest>/<experiment>/seed<S>.tar.xz`` for each complete run under
``runs/<preset>/``; ``unpack`` puts them back. They carry finished runs from a cluster to a
laptop, and a long sweep across machines that keep nothing but a repository: a re-issued sweep
skips the runs unpacked complete.

An archive is deterministic (members sorted, owners cleared, each file's own mtime), so packing
an unchanged folder twice writes the same bytes, and it is rewritten only when a file of its
folder is newer than it (a later ``bench_model.json`` or ``examples/``).
"""

import lzma
import os
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from gfl_repro.engine.checkpoint import latest_checkpoint
from gfl_repro.engine.runs import RunFolder, RunFolderError
from gfl_repro.io import atomic_write

SUFFIX = ".tar.xz"
EXAMPLES = "examples"  # the probe's output, written again from seed 0's checkpoint


@dataclass
class Tally:
    """What a pack or unpack did, by run: written, unchanged, and a note for each run skipped
    or replaced, with why."""

    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        head = f"{len(self.written)} written, {len(self.unchanged)} unchanged"
        return "\n".join([head, *(f"  {note}" for note in self.notes)])


def record_files(run_dir: Path) -> list[Path]:
    """The files of a run's record, sorted: every file under the folder but examples/ and the
    checkpoints, of which seed 0 keeps its last."""
    kept = latest_checkpoint(run_dir) if run_dir.name == "seed0" else None
    files = [p for p in run_dir.rglob("*")
             if p.is_file() and p.relative_to(run_dir).parts[0] != EXAMPLES
             and (p.suffix != ".pth" or p == kept)]  # fmt: skip
    return sorted(files, key=lambda p: p.relative_to(run_dir).as_posix())


def _clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def pack_run(run_dir: Path, archive: Path) -> bool:
    """Write the record of the complete run ``run_dir`` to ``archive`` unless the archive is
    newer than every file of the record. True when written."""
    files = record_files(run_dir)
    newest = max(p.stat().st_mtime for p in files)
    if archive.is_file() and archive.stat().st_mtime >= newest:
        return False

    def write(tmp: Path) -> None:
        with tarfile.open(tmp, "w:xz", preset=9) as tar:
            for path in files:
                tar.add(path, arcname=path.relative_to(run_dir).as_posix(), filter=_clean)

    atomic_write(archive, write)
    return True


def record_path(dest: Path, run_dir: Path) -> Path:
    """Where the record of ``run_dir`` (``.../<experiment>/seed<S>``) goes under ``dest``."""
    return dest / run_dir.parent.name / f"{run_dir.name}{SUFFIX}"


def pack(runs_root: Path, dest: Path) -> Tally:
    """Pack every complete run ``runs_root/<experiment>/seed<S>/`` into
    ``dest/<experiment>/seed<S>.tar.xz``; an incomplete one is skipped and named."""
    tally = Tally()
    for run_dir in sorted(runs_root.glob("*/seed*")):
        name = f"{run_dir.parent.name}/{run_dir.name}"
        if not RunFolder(run_dir).is_complete:
            tally.notes.append(f"{name}: skipped, not complete (no {RunFolder.METRICS})")
            continue
        written = pack_run(run_dir, record_path(dest, run_dir))
        (tally.written if written else tally.unchanged).append(name)
    return tally


def unpack_run(archive: Path, run_dir: Path) -> None:
    """Extract ``archive`` into ``run_dir`` (replacing what is there) by way of a sibling
    folder, so that ``run_dir`` is never half-written. An archive that is not a complete run's
    record, or holds anything but plain files inside the folder, is an error naming it."""
    tmp = run_dir.with_name(f".{run_dir.name}.{os.getpid()}.unpack")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with tarfile.open(archive, "r:xz") as tar:
            bad = [m.name for m in tar.getmembers() if not m.isfile()]
            if bad:
                raise RunFolderError(f"{archive}: not a run record, holds {bad[0]!r}")
            tar.extractall(tmp, filter="data")  # refuses absolute paths and ../
        if not RunFolder(tmp).is_complete:
            raise RunFolderError(f"{archive}: not a complete run (no {RunFolder.METRICS})")
        shutil.rmtree(run_dir, ignore_errors=True)
        os.replace(tmp, run_dir)
    except (tarfile.TarError, lzma.LZMAError, EOFError, OSError) as e:
        raise RunFolderError(f"{archive}: cannot be unpacked ({e})") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def unpack(src: Path, runs_root: Path) -> Tally:
    """Unpack every ``src/<experiment>/seed<S>.tar.xz`` into ``runs_root/<experiment>/seed<S>/``.
    A folder already complete is left as it is; an incomplete one (a training interrupted
    there) is replaced by the complete record and named."""
    tally = Tally()
    for archive in sorted(src.glob(f"*/seed*{SUFFIX}")):
        seed = archive.name.removesuffix(SUFFIX)
        run_dir, name = runs_root / archive.parent.name / seed, f"{archive.parent.name}/{seed}"
        if RunFolder(run_dir).is_complete:
            tally.unchanged.append(name)
            continue
        if run_dir.exists():
            tally.notes.append(f"{name}: replaced an incomplete folder")
        unpack_run(archive, run_dir)
        tally.written.append(name)
    return tally
