"""The paper's reported numbers, as data (COCO minival, R-50, 1x, unless a table says otherwise).

Keys are experiment names of ``experiments.registry``; columns are named as in the paper.
"""

# Table 2 rows k = 0 (GFLV1) and k = 4, p = 64 (GFLV2): AP, AP50, AP75, APs, APm, APl.
R50_1X = {
    "gflv1": {"AP": 40.2, "AP50": 58.6, "AP75": 43.4, "APs": 23.0, "APm": 44.3, "APl": 53.0},
    "gflv2": {"AP": 41.1, "AP50": 58.8, "AP75": 44.9, "APs": 23.5, "APm": 44.9, "APl": 53.3},
}
