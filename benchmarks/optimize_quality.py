"""Exact stylize (Gatys optimisation): quality against wall time, with the shared yardstick.

    python benchmarks/optimize_quality.py [--n 4] [--size 512] [--style starry_night] [--time-limit 60]

Each of N held-out photos (shorter side resized to --size, centre-cropped square) is optimised with
the product's *default* settings and the run's time limit set to --time-limit seconds (what a user
gets by typing that limit into the widget or passing ``--time-limit`` to the CLI; 0: no limit, the
default 300 iterations or convergence end the run); every few iterations the current image is measured with
``shared/tools/style_metrics.py`` (gap_closed, content_distance at 512 px). Prints the mean curve
(seconds -> gap, content) and the final row against the target: gap >= 0.95, content <= 1.0,
<= 60 s on a 2-core CPU. A single plain L-BFGS run at 256 px, 20 iterations, is the baseline measured
in the same run.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NAPARI_FAST_STYLE_SHARED", ROOT.parent / "shared"))
sys.path.insert(0, str(ROOT))


def square(img: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    h, w = img.shape[:2]
    s = size / min(h, w)
    im = Image.fromarray(img).resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
    a = np.asarray(im)
    y, x = (a.shape[0] - size) // 2, (a.shape[1] - size) // 2
    return np.ascontiguousarray(a[y:y + size, x:x + size])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--style", default="starry_night")
    ap.add_argument("--time-limit", type=float, default=60.0, help="seconds per run (0: none)")
    ap.add_argument("--iterations", type=int, help="override the default iterations")
    ap.add_argument("--style-weight", type=float, help="override the default style weight")
    ap.add_argument("--levels", type=int)
    ap.add_argument("--coarse-iterations", type=int)
    a = ap.parse_args(argv)
    sys.path.insert(0, str(SHARED / "tools"))
    import style_metrics as sm

    from benchmarks.style_quality import holdout_photos
    from napari_fast_style.engine import OptimizeConfig, load_vgg, optimize_iter, run_sync
    from napari_fast_style.engine.data import load_rgb

    vgg_path = SHARED / "weights" / "vgg16_caffe_features.pth"
    vgg = load_vgg(vgg_path, ("relu1_2", "relu2_2", "relu3_3", "relu4_3"))
    style_img = load_rgb(SHARED / "data" / "styles" / f"{a.style}.jpg")
    gs = {k: sm.gram(v) for k, v in sm.features(sm.load_rgb(SHARED / "data" / "styles" / f"{a.style}.jpg", 512)).items()}

    def measure(content01, out01):
        from PIL import Image

        c = np.asarray(Image.fromarray((content01 * 255).round().astype(np.uint8)).resize((512, 512), Image.BICUBIC),
                       dtype=np.float64) / 255
        o = np.asarray(Image.fromarray((np.clip(out01, 0, 1) * 255).round().astype(np.uint8)).resize(
            (512, 512), Image.BICUBIC), dtype=np.float64) / 255
        fc, fo = sm.features(c), sm.features(o)
        return 1 - sm.style_distance(fo, gs) / sm.style_distance(fc, gs), sm.content_distance(fo, fc)

    overrides = {k: v for k, v in (("iterations", a.iterations), ("style_weight", a.style_weight),
                                   ("levels", a.levels), ("coarse_iterations", a.coarse_iterations)) if v is not None}
    cfg = OptimizeConfig(size=a.size, preview_every=5, time_limit=a.time_limit or None, **overrides)
    photos = holdout_photos(a.n)
    curves, finals, base = [], [], []
    for p in photos:
        img = square(load_rgb(p), a.size)
        c01 = img.astype(np.float64) / 255
        # baseline: plain single-level L-BFGS at 256 px from the content, 20 iterations, fp32
        small = square(load_rgb(p), 256)
        t = time.perf_counter()
        b = run_sync(optimize_iter(small, style_img, OptimizeConfig(size=256, levels=1, iterations=20,
                                                                      init="content", style_weight=60.0,
                                                                      tolerance=0, precision="fp32",
                                                                      preview_every=0),
                                   network=vgg))
        bt = time.perf_counter() - t
        base.append((bt, *measure(small.astype(np.float64) / 255, b.data.astype(np.float64) / 255)))
        pts = []
        t0 = time.perf_counter()

        def cb(pr, pts=pts, t0=t0):
            if pr.preview is not None:
                pts.append((time.perf_counter() - t0, pr.step, pr.preview))

        res = run_sync(optimize_iter(img, style_img, cfg, network=vgg), cb)
        total = time.perf_counter() - t0
        curve = [(sec, step, *measure(c01, prev)) for sec, step, prev in pts]
        curves.append(curve)
        finals.append((total, *measure(c01, res.data.astype(np.float64) / 255)))
    print(f"exact stylize {a.size}x{a.size}, style {a.style}, {len(photos)} held-out photos, defaults "
          f"(iterations {cfg.iterations}, levels {cfg.levels}, coarse {cfg.coarse_iterations}, "
          f"style_weight {cfg.style_weight}, init {cfg.init}, {cfg.optimizer}, time limit {cfg.time_limit} s)")
    print(f"{'step':>5s} {'seconds':>8s} {'gap_closed':>11s} {'content':>8s}")
    n = min(len(c) for c in curves)
    for i in range(n):
        rows = [c[i] for c in curves]
        print(f"{rows[0][1]:5d} {np.mean([r[0] for r in rows]):8.1f} {np.mean([r[2] for r in rows]):11.3f} "
              f"{np.mean([r[3] for r in rows]):8.3f}")
    for p, f in zip(photos, finals):
        print(f"  {p.name:28s} {f[0]:6.1f} s  gap {f[1]:.3f}  content {f[2]:.3f}")
    bt, bg, bc = (float(np.mean([b[i] for b in base])) for i in range(3))
    ft, fg, fc = (float(np.mean([f[i] for f in finals])) for i in range(3))
    print(f"baseline: plain L-BFGS 256 px, 20 it, fp32: {bt:6.1f} s  gap {bg:.3f}  content {bc:.3f}")
    print(f"default : {a.size} px final image          : {ft:6.1f} s  gap {fg:.3f}  content {fc:.3f}  "
          f"({ft / bt:.2f}x the baseline's time)")
    ok = fg >= 0.95 and fc <= 1.0 and ft <= 60
    print(f"target gap >= 0.95, content <= 1.0, <= 60 s: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
