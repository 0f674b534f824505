"""gfl-repro: Generalized Focal Loss V2 in plain PyTorch, with every ablation of the paper."""
