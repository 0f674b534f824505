"""Timing in one place. Every measurement goes through one helper (``timing.time_calls``:
warm-up, timed repetitions, median; CUDA synchronised) and every table through one formatter
(``table.format_table``); each command takes a frozen dataclass of options.

- ``timing``: time_calls, median_times, gflop;
- ``table``: format_table, write_csv, read_csv;
- ``workloads``: our detectors, torchvision's FCOS, random inputs, one step or inference as a
  callable (shared with ``gfl_repro.gpu_check``);
- ``suite``: ``gfl-repro bench``, our code against references (BenchOptions);
- ``model``: ``gfl-repro bench-model``, trained runs for Table 8 and Fig. 6 (ModelBenchOptions);
- ``cost``: ``gfl-repro experiment-cost``, each experiment's step against GFLV2's (CostOptions).

They sit on the engine side: they run models and read run folders, never the recipes
(``experiments/``); the CLI resolves presets and experiments and hands them configs.
"""
