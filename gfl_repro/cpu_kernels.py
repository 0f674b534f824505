"""One set of CPU kernels on every x86 machine: AVX2, so that a CPU run gives the same numbers
on any machine it lands on.

torch, oneDNN and MKL pick their kernels by the CPU's vector ISA, and float results differ between
ISAs. A mini training is chaotic enough that the last bits grow into another run: GFLV2 at mini,
seeds 0-3, reached 29.42, 29.30, 26.14 and 26.72 AP with AVX-512 kernels against 26.90, 25.20,
25.51 and 26.52 with AVX2, same code and config (a difference of +1.86 ± 1.80 AP, no shift
beyond noise over 4 seeds: the ISA acts as another seed). ``pin`` caps all three libraries at AVX2
where the CPU has it, which reproduces an AVX2 machine's runs bit for bit on an AVX-512 one (the
tiny fingerprint of tests/engine/test_bit_identical.py), at some speed on the wider machine.

The libraries read these variables once, when they first load, so the pin is set when the
package is imported (``gfl_repro/__init__.py``), before the package imports torch: every entry
point (``gfl-repro``, ``python -m gfl_repro.cli``, ``torchrun -m gfl_repro.cli``, the tests)
goes through it. A variable already set is kept; ``GFL_REPRO_CPU_KERNELS=native`` leaves all of
them alone. Each run records what it computed with in env.json (``engine.runs.cpu``).

This module imports nothing heavy: it runs before torch loads.
"""

import os
from pathlib import Path

OPT_OUT = "GFL_REPRO_CPU_KERNELS"  # "native": no pin
PIN = {
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's own kernels
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # convolutions
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",  # matrix products
    "MKL_CBWR": "AVX2",  # MKL's reproducible code path of that ISA
}


def has_avx2(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU's flags name AVX2 (False where /proc/cpuinfo is absent: not Linux x86)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    return any(
        line.startswith("flags") and "avx2" in line.split(":", 1)[-1].split()
        for line in text.splitlines()
    )


def pin(environ=os.environ, cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, str]:
    """Set the variables of PIN that ``environ`` does not hold yet, on a CPU with AVX2 and
    unless ``GFL_REPRO_CPU_KERNELS=native``. Returns the variables it set."""
    if environ.get(OPT_OUT, "").lower() == "native" or not has_avx2(cpuinfo):
        return {}
    added = {k: v for k, v in PIN.items() if k not in environ}
    environ.update(added)
    return added


def pinned(environ=os.environ) -> dict[str, str]:
    """The variables of PIN that ``environ`` holds, with their values."""
    return {k: environ[k] for k in PIN if k in environ}
