"""The one timing helper of the toolkit: untimed warm-up calls, then timed repetitions, their
median kept; the device synchronised around each timed call on CUDA.

Where several callables are timed together their repetitions are interleaved (A, B, A, B, ...)
so that a load on the machine lands on all of them alike.
"""

import statistics
import time
from collections.abc import Callable, Iterable, Sequence

import torch


def sync(device: torch.device | None) -> None:
    """Wait for the device's queued work (CUDA only); a no-op on CPU and for None."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fns: Sequence[Callable[..., object]], reps: int, warmup: int,
               device: torch.device | None = None,
               inputs: Iterable | None = None) -> list[list[float]]:  # fmt: skip
    """Seconds of each of ``reps`` timed calls of every callable, after ``warmup`` untimed ones.

    With ``inputs``, each repetition first draws the next item (untimed: loading stays outside
    the timer) and passes it to every callable; without, the callables take no argument.
    Returns one list of ``reps`` seconds per callable, in the order of ``fns``.
    """
    items = None if inputs is None else iter(inputs)
    times: list[list[float]] = [[] for _ in fns]
    for i in range(warmup + reps):
        args = () if items is None else (next(items),)
        for fn, ts in zip(fns, times, strict=True):
            sync(device)
            tic = time.perf_counter()
            fn(*args)
            sync(device)
            if i >= warmup:
                ts.append(time.perf_counter() - tic)
    return times


def median_times(fns: Sequence[Callable[[], object]], reps: int, warmup: int,
                 device: torch.device | None = None) -> list[float]:  # fmt: skip
    """Median seconds of each callable over ``reps`` interleaved repetitions (time_calls)."""
    return [statistics.median(ts) for ts in time_calls(fns, reps, warmup, device)]


def gflop(fn: Callable[[], object]) -> float:
    """Floating-point operations of one call, in GFLOP (convolutions and matrix products)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9
