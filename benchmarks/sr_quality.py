"""Super-resolution quality and speed against bicubic, measured in the same run.

    python benchmarks/sr_quality.py [--n 8] [--scale 4] [MODEL ...]

For each held-out photo (never trained on): the reference is the photo cropped to a multiple of the
scale (shorter side at most 512), the input its anti-aliased bicubic downsampling; the outputs of
bicubic upsampling and of each SR model are measured with ``shared/tools/style_metrics.py sr`` (PSNR
and SSIM on Y, border = scale) and by the relu2_2 feature distance to the reference (the perceptual
criterion). Also times 512x512 -> 2048x2048 (x4) on this machine.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NAPARI_FAST_STYLE_SHARED", ROOT.parent / "shared"))
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", help="SR model names or paths (default: every installed one of --scale)")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--scale", type=int, default=4)
    a = ap.parse_args(argv)
    import torch
    import torch.nn.functional as F
    from PIL import Image

    sys.path.insert(0, str(SHARED / "tools"))
    import style_metrics as sm

    from benchmarks.style_quality import holdout_photos
    from napari_fast_style.engine import list_models, load_vgg, super_resolve
    from napari_fast_style.engine.data import load_rgb

    s = a.scale
    models = a.models or [e.name for e in list_models("sr") if e.metadata.get("scale") == s]
    vgg = load_vgg(SHARED / "weights" / "vgg16_caffe_features.pth", ("relu2_2",))

    def t(img):
        return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255

    def feat_dist(out, ref):
        with torch.no_grad():
            fo, fr = vgg(t(out))["relu2_2"], vgg(t(ref))["relu2_2"]
        return float(((fo - fr) ** 2).sum() / (fr ** 2).sum())

    rows = {"bicubic": [], **{m: [] for m in models}}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        refs, outs = [], {k: [] for k in rows}
        for p in holdout_photos(a.n):
            img = load_rgb(p)
            h, w = img.shape[:2]
            k = min(1.0, 512 / min(h, w))
            img = np.asarray(Image.fromarray(img).resize((round(w * k), round(h * k)), Image.BICUBIC))
            h, w = img.shape[0] // s * s, img.shape[1] // s * s
            hr = np.ascontiguousarray(img[:h, :w])
            lr_t = F.interpolate(t(hr), scale_factor=1 / s, mode="bicubic", antialias=True, align_corners=False)
            lr = (lr_t.clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
            ref = d / f"{p.stem}-hr.png"
            Image.fromarray(hr).save(ref)
            refs.append(str(ref))
            bic = F.interpolate(t(lr), scale_factor=s, mode="bicubic", align_corners=False).clamp(0, 1)
            bic = (bic[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
            candidates = {"bicubic": bic, **{m: super_resolve(lr, scale=s, model=m) for m in models}}
            for name, out in candidates.items():
                f = d / f"{p.stem}-{abs(hash(name))}.png"
                Image.fromarray(out).save(f)
                outs[name].append(str(f))
                rows[name].append(feat_dist(out, hr))
        print(f"x{s} super-resolution, {len(refs)} held-out photos (shorter side <= 512)")
        print(f"{'':28s} {'PSNR-Y dB':>10s} {'vs bicubic':>11s} {'SSIM-Y':>8s} {'relu2_2 dist':>13s}")
        base = None
        for name in rows:
            rep = sm.sr_report(s, refs, outs[name])["mean"]
            base = rep["psnr_y"] if base is None else base
            print(f"{name:28s} {rep['psnr_y']:10.2f} {rep['psnr_y'] - base:+11.2f} {rep['ssim_y']:8.4f} "
                  f"{np.mean(rows[name]):13.4f}")
    if models and s == 4:
        lr = (np.random.default_rng(0).random((512, 512, 3)) * 255).astype(np.uint8)
        for m in models:
            super_resolve(lr[:64, :64], scale=4, model=m)
            t0 = time.perf_counter()
            super_resolve(lr, scale=4, model=m)
            print(f"{m}: 512x512 -> 2048x2048 in {time.perf_counter() - t0:.2f} s on this machine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
