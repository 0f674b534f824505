"""gfl-repro: Generalized Focal Loss V2 in plain PyTorch, with every ablation of the paper."""

from gfl_repro.cpu_kernels import pin as _pin_cpu_kernels

_pin_cpu_kernels()  # before anything imports torch: see gfl_repro/cpu_kernels.py
