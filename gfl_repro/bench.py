"""Moved to ``gfl_repro.engine.bench``. Kept only for ``tests/test_cuda.py``'s import of
``random_targets``; remove once it imports ``gfl_repro.engine.bench.workloads``."""

from gfl_repro.engine.bench.workloads import random_targets

__all__ = ["random_targets"]
