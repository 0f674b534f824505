"""The paper's reported numbers, as data: every cell of Tables 1-6 and 8, and the GFLV2 rows of
Table 7. COCO minival, R-50, 1x, unless a table says otherwise; column names as in the paper.

``PAPER[table][experiment] = {column: value}``; ``COLUMNS[table]`` lists the table's columns.
"""

COLUMNS = {
    "1": ("AP", "AP50", "AP75"),
    "2": ("AP", "AP50", "AP75", "APs", "APm", "APl"),
    "3": ("AP", "AP50", "AP75", "FPS"),
    "4": ("AP", "AP50", "AP75", "FPS"),
    "5": ("AP", "AP50", "AP75", "FPS"),
    "6": ("AP", "FPS", "PCC"),
    "7": ("FPS", "AP", "AP50", "AP75", "APs", "APm", "APl"),
    "8": ("AP", "Training Hours", "Inference FPS"),
}


def _row(columns: tuple[str, ...], *values: float) -> dict[str, float]:
    return dict(zip(columns, values, strict=True))


def _table(number: str, rows: dict[str, tuple[float, ...]]) -> dict[str, dict[str, float]]:
    return {name: _row(COLUMNS[number], *values) for name, values in rows.items()}


GFLV2_1X = (41.1, 58.8, 44.9)  # the default row of Tables 1, 3, 4, 5

PAPER = {
    "1": _table("1", {
        "t1_topk": (40.8, 58.5, 44.2),
        "t1_mean": (40.2, 58.5, 43.6),
        "t1_var": (40.3, 58.3, 43.7),
        "t1_topk_mean": GFLV2_1X,
        "t1_topk_var": (40.9, 58.5, 44.7),
        "t1_topk_mean_var": (40.9, 58.4, 44.7),
    }),
    "2": _table("2", {
        "t2_k0": (40.2, 58.6, 43.4, 23.0, 44.3, 53.0),
        "t2_k1_p64": (40.2, 58.3, 44.0, 23.4, 44.1, 52.1),
        "t2_k2_p64": (40.9, 58.5, 44.6, 23.3, 44.8, 53.5),
        "t2_k3_p64": (40.9, 58.5, 44.6, 24.3, 44.9, 52.3),
        "t2_k4_p64": (41.1, 58.8, 44.9, 23.5, 44.9, 53.3),
        "t2_k8_p64": (41.0, 58.6, 44.5, 23.5, 44.5, 53.4),
        "t2_k16_p64": (40.8, 58.5, 44.4, 23.4, 44.2, 53.1),
        "t2_k4_p8": (40.9, 58.4, 44.5, 23.1, 44.5, 52.6),
        "t2_k4_p16": (40.8, 58.3, 44.1, 23.3, 44.6, 52.0),
        "t2_k4_p32": (40.9, 58.7, 44.3, 23.1, 44.6, 53.2),
        "t2_k4_p128": (40.9, 58.3, 44.6, 23.2, 44.4, 52.7),
        "t2_k4_p256": (40.7, 58.3, 44.4, 23.4, 44.3, 52.9),
    }),
    "3": _table("3", {
        "t3_atss_star": (39.9, 58.5, 43.0, 19.4),
        "t3_point": (40.2, 58.6, 43.7, 19.3),
        "t3_region": (40.5, 59.0, 44.0, 14.0),
        "t3_border_dense": (40.5, 58.7, 44.1, 16.2),
        "t3_border_middle": (40.6, 59.0, 44.0, 18.3),
        "t3_border_extreme": (40.6, 58.9, 44.1, 17.8),
        "t3_regular": (40.7, 59.0, 44.1, 17.9),
        "t3_deformable": (40.8, 58.9, 44.6, 18.4),
        "t3_distribution": (*GFLV2_1X, 19.4),
    }),
    "4": _table("4", {
        "t4_gflv1": (40.2, 58.6, 43.4, 19.4),
        "t4_composed_d16": (40.5, 58.5, 43.7, 19.2),
        "t4_composed_d32": (40.5, 58.5, 43.7, 19.2),
        "t4_composed_d64": (40.7, 58.5, 44.3, 19.1),
        "t4_composed_d128": (40.7, 58.6, 44.4, 18.9),
        "t4_composed_d256": (40.7, 58.3, 44.2, 18.5),
        "t4_decomposed": (*GFLV2_1X, 19.4),
    }),
    "5": _table("5", {
        "t5_retinanet": (36.5, 55.5, 38.7, 19.0),
        "t5_retinanet_gflv2": (38.6, 56.2, 41.7, 19.0),
        "t5_foveabox": (36.4, 55.8, 38.8, 20.0),
        "t5_foveabox_gflv2": (38.5, 56.8, 41.6, 20.0),
        "t5_fcos": (38.5, 56.9, 41.4, 19.4),
        "t5_fcos_gflv2": (40.6, 58.2, 43.9, 19.4),
        "t5_atss": (39.2, 57.4, 42.2, 19.4),
        "t5_atss_gflv2": (*GFLV2_1X, 19.4),
    }),
    "6": _table("6", {
        "t6_fcos_star": (39.1, 19.4, 0.624),
        "t6_atss_star": (39.9, 19.4, 0.631),
        "t6_gflv1": (40.2, 19.4, 0.634),
        "t6_gflv2": (41.1, 19.4, 0.660),
    }),
    # Table 7 (COCO test-dev, 2x multi-scale training): the GFLV2 rows (Res2Net is not built).
    "7": _table("7", {
        "t7_r50": (19.4, 44.3, 62.3, 48.5, 26.8, 47.7, 54.1),
        "t7_r101": (14.6, 46.2, 64.3, 50.5, 27.8, 49.9, 57.0),
        "t7_r101_dcn": (12.7, 48.3, 66.5, 52.8, 28.8, 51.9, 60.7),
        "t7_x101_32x4d_dcn": (10.7, 49.0, 67.6, 53.5, 29.7, 52.4, 61.4),
        "R2-101-DCN": (10.9, 50.6, 69.0, 55.3, 31.3, 54.3, 63.5),
    }),
    # Table 8 (8 RTX 2080Ti, 1x): ATSS*, GFLV1 and GFLV2 are ours to run; the others are the
    # paper's reference points (PAA, RepPointsV2, BorderDet are not implemented here).
    "8": _table("8", {
        "t6_atss_star": (39.9, 8.2, 19.4),
        "t6_gflv1": (40.2, 8.2, 19.4),
        "PAA": (40.4, 12.5, 19.4),
        "RepPointsV2": (41.0, 14.4, 13.5),
        "BorderDet": (41.4, 10.0, 16.7),
        "t6_gflv2": (41.1, 8.2, 19.4),
    }),
}  # fmt: skip

# The main comparison of `make reproduce`: Table 2's k = 0 (GFLV1) and k = 4, p = 64 (GFLV2).
R50_1X = {"gflv1": PAPER["2"]["t2_k0"], "gflv2": PAPER["2"]["t2_k4_p64"]}
