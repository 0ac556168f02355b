"""Peak memory of exact stylize at a large size, untiled (baseline) against tiled, in the same run.

    python benchmarks/optimize_memory.py [--size 2048] [--tile 512] [--iterations 1]

Each configuration runs in a fresh process (so its peak resident memory, ``ru_maxrss``, is its own):
one level at ``--size`` (no coarse level, so the final pass alone is measured), *The Starry Night* as
the style, a held-out photo upscaled to the size as the content. Prints seconds and peak RSS with the
ratio to the untiled baseline. Needs ``shared/`` (or ``$NAPARI_FAST_STYLE_SHARED``).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
import numpy as np
from PIL import Image
from benchmarks.style_quality import SHARED, holdout_photos
from napari_fast_style.engine import OptimizeConfig, optimize_iter, run_sync
from napari_fast_style.engine.data import load_rgb

size, tile, iterations = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
content = np.asarray(Image.fromarray(load_rgb(holdout_photos(1)[0])).resize((size, size), Image.BICUBIC))
style = load_rgb(SHARED / "data" / "styles" / "starry_night.jpg", 512)
cfg = OptimizeConfig(size=size, levels=1, iterations=iterations, tile=tile, tolerance=0, preview_every=0)
t = time.perf_counter()
res = run_sync(optimize_iter(content, style, cfg, network=SHARED / "weights" / "vgg16_caffe_features.pth"))
print(json.dumps({"seconds": time.perf_counter() - t, "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                  / 2**20, "shape": list(res.data.shape), "tiles": res.metadata["napari_fast_style"]["tiles"]}))
"""


def run(size: int, tile: int, iterations: int) -> dict:
    # cwd=ROOT: the child imports ``benchmarks.style_quality`` (same held-out photo and shared/ as the others)
    out = subprocess.run([sys.executable, "-c", CHILD, str(size), str(tile), str(iterations)],
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["killed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--iterations", type=int, default=1)
    a = ap.parse_args(argv)
    rows = [("untiled (baseline)", run(a.size, 0, a.iterations)),
            (f"tiles of {a.tile} px", run(a.size, a.tile, a.iterations))]
    base = rows[0][1].get("peak_gib")
    print(f"exact stylize, {a.size}x{a.size}, one level, {a.iterations} iteration(s) per tile")
    print(f"{'configuration':24s} {'tiles':>6s} {'seconds':>8s} {'peak RSS GiB':>13s} {'vs baseline':>12s}")
    for name, r in rows:
        if "error" in r:
            print(f"{name:24s} failed: {r['error']}")
            continue
        ratio = f"{r['peak_gib'] / base:.2f}x" if base else "-"
        print(f"{name:24s} {r['tiles'][-1]:6d} {r['seconds']:8.1f} {r['peak_gib']:13.2f} {ratio:>12s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
