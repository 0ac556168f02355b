"""Style quality on held-out photos with the shared yardstick (``shared/tools/style_metrics.py style``).

    python benchmarks/style_quality.py [MODEL ...] [--split val|test] [--n 8] [--offset 0]
                                       [--precision auto|fp32|bf16|fp16] [--json]

For each model: N photos of the held-out split of ``shared/data/train`` (never trained on), from the
``--offset``-th on, are resized to a shorter side of 512, stylized with the product's default settings and
measured against the model's painting (a multi-style model: each of its styles alone). Prints mean
gap_closed and content_distance per model and style, with the standard error of each mean over the photos
and the targets of the issues beside them (foundation: gap >= 0.6; bundled style set: gap >= 0.85; both
with content distance <= 1.0).

``--split val`` and ``--split test`` divide the 116 held-out photos with each collection (BSDS500, COCO,
ImageNet, T91) shared out in proportion, by a hash of the file name: 40 photos to val and 76 to test.
Choose between candidate models on val; report on test (the README's table). Five of the first 8
photos, which the training rounds before this split chose on, are in test.
With ``--split``, ``--n`` and ``--offset`` count within that split (default: all of it).

Without ``--split`` the photos are the held-out split's first N in file-name order. The names start with
their collection, so the first 40 are BSDS500 and COCO photos and the other 76 ImageNet, COCO and T91 ones
(``--n 116``: all of them). The first 8 (the default) are the ones the training rounds before the val/test
split chose on. Photo to photo the content distance spreads widely (standard deviation ~0.4), so a mean
over 8 photos is uncertain by about +-0.15 and one over the 76 of test by about +-0.05: compare models on
the same photos.

``--precision`` fixes the inference precision. The default, ``auto``, is what the product does: on a CPU
it picks bf16 or fp32 from a short timing probe once per process, and a busy machine (say, a training run
beside it) can tip that probe, so two runs of the same model may differ by about 0.003. Give ``fp32`` (or
``bf16``) when comparing runs; the precision used is printed with the table.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np


ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NAPARI_FAST_STYLE_SHARED", ROOT.parent / "shared"))
# measure this checkout's package and bundled weights, not whichever copy pip last installed in editable mode
sys.path.insert(0, str(ROOT))


def _held_out() -> list[Path]:
    from napari_fast_style.engine.data import image_files, split_files

    return split_files(image_files(SHARED / "data" / "train"))[1]


def _window(photos: list[Path], n: int, offset: int, what: str) -> list[Path]:
    """``photos[offset:offset + n]``, or exit with a message when that range does not fit."""
    if offset < 0 or n < 1 or offset + n > len(photos):
        raise SystemExit(f"{what} has {len(photos)} photos: --offset {offset} --n {n} does not fit")
    return photos[offset:offset + n]


def holdout_photos(n: int, offset: int = 0) -> list[Path]:
    return _window(_held_out(), n, offset, "the held-out split")


VAL_SHARE = 40 / 116


def collection(path: Path) -> str:
    """The collection a training photo comes from: its name up to the first underscore (``bsds500_...``)."""
    return Path(path).name.split("_", 1)[0]


def stratified_split(held: list[Path], share: float = VAL_SHARE) -> tuple[list[Path], list[Path]]:
    """The held-out photos as (val, test), each collection shared out in proportion.

    Within a collection the photos are ordered by a hash of their name (so the split does not follow
    name order, and a photo stays on its side when others are added); the ``share`` of them (rounded so
    the sizes add up to ``round(share * len(held))``) go to val, the rest to test. Returns both lists in
    the held-out split's own order.
    """
    groups: dict[str, list[Path]] = {}
    for p in held:
        groups.setdefault(collection(p), []).append(p)
    want = {k: share * len(v) for k, v in groups.items()}
    take = {k: int(w) for k, w in want.items()}
    left = round(share * len(held)) - sum(take.values())
    for k in sorted(want, key=lambda k: (take[k] - want[k], k))[:max(left, 0)]:
        take[k] += 1
    val = set()
    for k, ps in groups.items():
        ps = sorted(ps, key=lambda p: hashlib.sha1(f"val|{p.name}".encode()).hexdigest())
        val.update(ps[:take[k]])
    return [p for p in held if p in val], [p for p in held if p not in val]


def split_photos(which: str, n: Optional[int] = None, offset: int = 0) -> list[Path]:
    """``val`` (40 photos, for choosing between models) or ``test`` (the other 76, for reporting)."""
    val, test = stratified_split(_held_out())
    photos = {"val": val, "test": test}[which]
    return _window(photos, len(photos) - offset if n is None else n, offset, f"the {which} split")


def metrics_module():
    sys.path.insert(0, str(SHARED / "tools"))
    import style_metrics

    return style_metrics


def evaluate(model: str, photos: list[Path], workdir: Path, precision: str = "auto") -> list[dict]:
    """One row per style the model holds (a multi-style model is measured one style at a time)."""
    from PIL import Image

    from napari_fast_style.engine import find_model, stylize
    from napari_fast_style.engine.data import load_rgb

    entry = find_model(model, kind="style")
    names = list(entry.styles) if entry.styles else [entry.name]
    contents = []
    for p in photos:
        c = workdir / f"{p.stem}.png"
        if not c.exists():
            Image.fromarray(load_rgb(p, 512)).save(c)
        contents.append(str(c))
    rows = []
    for name in names:
        weights = {"style_weights": {name: 1.0}} if len(names) > 1 else {}
        outputs = []
        t = time.perf_counter()
        for c in contents:
            o = workdir / f"{Path(c).stem}-{entry.name}-{name}.png"
            Image.fromarray(stylize(np.asarray(Image.open(c)), entry, precision=precision, **weights)).save(o)
            outputs.append(str(o))
        seconds = time.perf_counter() - t
        style = SHARED / "data" / "styles" / f"{name}.jpg"
        rep = metrics_module().style_report(str(style), contents, outputs, 512)
        label = entry.name if len(names) == 1 else f"{entry.name}:{name}"
        se = {f"{k}_se": float(np.std([r[k] for r in rep["images"]], ddof=1) / np.sqrt(len(photos)))
              if len(photos) > 1 else float("nan") for k in ("gap_closed", "content_distance")}
        rows.append({"model": label, "style": style.name, "n": len(photos), "seconds": round(seconds, 2),
                     **rep["mean"], **se, "photos": [Path(c).stem for c in contents]})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*")
    ap.add_argument("--split", choices=("val", "test"),
                    help="measure on a split of the held-out photos stratified by collection: val (40 photos, "
                         "for choosing) or test (the other 76, for reporting); --n and --offset then count "
                         "within it")
    ap.add_argument("--n", type=int, default=None,
                    help="how many held-out photos (default 8; with --split, all of the split)")
    ap.add_argument("--offset", type=int, default=0,
                    help="skip this many photos first (of the held-out split, or of --split's photos)")
    ap.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                    help="inference precision (default auto: the product's choice for this machine)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    from napari_fast_style.engine import list_models, resolve_device, resolve_precision

    dtype = str(resolve_precision(a.precision, resolve_device("auto"))).replace("torch.", "")

    models = a.models or [e.name for e in list_models("style") if e.source == "bundled"]
    if a.split:
        photos = split_photos(a.split, a.n, a.offset)
        where = f"the {a.split} split (stratified by collection)" + (f" from #{a.offset}" if a.offset else "")
    else:
        photos = holdout_photos(8 if a.n is None else a.n, a.offset)
        where = f"held-out photos from #{a.offset}"
    with tempfile.TemporaryDirectory() as d:
        rows = [{**row, "precision": dtype} for m in models for row in evaluate(m, photos, Path(d), a.precision)]
    if a.json:
        print(json.dumps(rows, indent=1))
        return 0
    import napari_fast_style

    print(f"precision: {dtype} ({a.precision}); {len(photos)} photos of {where}; "
          f"package {Path(napari_fast_style.__file__).parent}")
    print(f"{'model':48s} {'gap_closed':>10s} {'+-se':>6s} {'content_dist':>12s} {'+-se':>6s} "
          f"{'>=0.6,<=1.0':>12s} {'>=0.85,<=1.0':>12s}")
    for r in rows:
        g, c = r["gap_closed"], r["content_distance"]
        print(f"{r['model']:48s} {g:10.3f} {r['gap_closed_se']:6.3f} {c:12.3f} {r['content_distance_se']:6.3f} "
              f"{str(g >= 0.6 and c <= 1.0):>12s} {str(g >= 0.85 and c <= 1.0):>12s}")
    if len(rows) > 1:
        g = float(np.mean([r["gap_closed"] for r in rows]))
        c = float(np.mean([r["content_distance"] for r in rows]))
        print(f"{'mean of ' + str(len(rows)) + ' rows':48s} {g:10.3f} {c:12.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
