"""Style quality on held-out photos with the shared yardstick (``shared/tools/style_metrics.py style``).

    python benchmarks/style_quality.py [MODEL ...] [--n 8] [--json]

For each model: the first N photos of the held-out split of ``shared/data/train`` (never trained on)
are resized to a shorter side of 512, stylized with the product's default settings and measured
against the model's painting. Prints mean gap_closed and content_distance per model, with the
targets of the issues beside them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NAPARI_FAST_STYLE_SHARED", ROOT.parent / "shared"))


def holdout_photos(n: int) -> list[Path]:
    from napari_fast_style.engine.data import image_files, split_files

    _, held = split_files(image_files(SHARED / "data" / "train"))
    return held[:n]


def metrics_module():
    sys.path.insert(0, str(SHARED / "tools"))
    import style_metrics

    return style_metrics


def evaluate(model: str, photos: list[Path], workdir: Path) -> dict:
    from PIL import Image

    from napari_fast_style.engine import find_model, stylize
    from napari_fast_style.engine.data import load_rgb

    entry = find_model(model, kind="style")
    style_name = entry.styles[0] if entry.styles else entry.name
    style = SHARED / "data" / "styles" / f"{style_name}.jpg"
    contents, outputs = [], []
    t = time.perf_counter()
    for p in photos:
        img = load_rgb(p, 512)
        c = workdir / f"{p.stem}.png"
        o = workdir / f"{p.stem}-{entry.name}.png"
        Image.fromarray(img).save(c)
        Image.fromarray(stylize(img, entry.name)).save(o)
        contents.append(str(c))
        outputs.append(str(o))
    seconds = time.perf_counter() - t
    rep = metrics_module().style_report(str(style), contents, outputs, 512)
    return {"model": entry.name, "style": style.name, "n": len(photos), "seconds": round(seconds, 2), **rep["mean"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    from napari_fast_style.engine import list_models

    models = a.models or [e.name for e in list_models("style") if e.source == "bundled"]
    photos = holdout_photos(a.n)
    with tempfile.TemporaryDirectory() as d:
        rows = [evaluate(m, photos, Path(d)) for m in models]
    if a.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'model':32s} {'gap_closed':>10s} {'content_dist':>12s} {'ok (>=0.6, <=1.0)':>18s}")
    for r in rows:
        ok = r["gap_closed"] >= 0.6 and r["content_distance"] <= 1.0
        print(f"{r['model']:32s} {r['gap_closed']:10.3f} {r['content_distance']:12.3f} {str(ok):>18s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
