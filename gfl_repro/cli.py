"""The ``gfl-repro`` command."""

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    import time

    import torch

    from gfl_repro.config import ModelConfig
    from gfl_repro.models.build import build_model

    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = build_model(ModelConfig()).eval()
    n_params = sum(p.numel() for p in model.parameters())
    n_dgqp = sum(p.numel() for p in model.head.quality.parameters())
    print(f"GFLV2 R-50-FPN (random init, 80 classes): {n_params:,} parameters, DGQP {n_dgqp:,}")
    image = torch.randn(1, 3, args.height, args.width)
    meta = {"img_shape": (args.height, args.width), "scale_factor": [1.0] * 4}
    with torch.no_grad():
        t1 = time.perf_counter()
        out = model(image)
        dets = model.head.predict(out, model.priors(out), [meta], model.inference)[0]
        t2 = time.perf_counter()
    for (h, w), s in zip(out.level_sizes, model.strides, strict=True):
        print(f"  P{s.bit_length() - 1}: stride {s:3d}, {h}x{w}")
    print(f"scores {tuple(out.scores.shape)}, box distributions {tuple(out.reg.shape)}")
    print(f"mean J at init {out.scores.mean():.4f}; {len(dets['scores'])} detections above 0.05")
    print(
        f"build {t1 - t0:.1f} s, forward + post-processing of one {args.height}x{args.width} "
        f"image {t2 - t1:.1f} s on {torch.get_num_threads()} threads"
    )
    return 0


def _convert(args: argparse.Namespace) -> int:
    from gfl_repro import convert

    return convert.run(args) or 0


def _predict(args: argparse.Namespace) -> int:
    from gfl_repro import predict

    return predict.run(args) or 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gfl-repro", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="build GFLV2 R-50-FPN and run one random image through it")
    p.add_argument("--height", type=int, default=800)
    p.add_argument("--width", type=int, default=1216)
    p.set_defaults(func=_demo)

    from gfl_repro import convert, predict

    p = sub.add_parser(
        "convert-checkpoint", help="map an mmdetection GFL checkpoint onto this model"
    )
    convert.add_arguments(p)
    p.set_defaults(func=_convert)

    p = sub.add_parser("predict", help="detect objects in one image with a checkpoint")
    predict.add_arguments(p)
    p.set_defaults(func=_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
