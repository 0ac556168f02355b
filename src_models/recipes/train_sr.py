"""Retrain a bundled super-resolution model: ``python -m src_models.recipes.train_sr RECIPE.json``.

A recipe holds :class:`~napari_fast_style.engine.superres.SRTrainConfig` settings (``config``), the
loop settings (``loop``: budget, learning rate, seed; or ``stages``: several loop settings run one after
the other, each continuing from the last), a display ``name`` and the ``output`` file name.
Data root: ``--data`` (default ``../shared/data`` beside the repository); training uses the
photographs in ``DATA/train`` except the held-out split (``napari_fast_style.engine.data.is_holdout``),
which is only used afterwards: centre crops of up to ``eval_images`` held-out photos give the model's
and plain bicubic's L1 and PSNR, written with the loss history to ``OUTPUT.history.json``.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from ._common import parser, setup


def heldout_crops(folder: Path, short_side: int, side: int, limit: int):
    """``[N, 3, side, side]`` centre crops of the held-out photos (resized to ``short_side``)."""
    import numpy as np
    import torch

    from napari_fast_style.engine.data import image_files, load_rgb, split_files

    crops = []
    for p in split_files(image_files(folder))[1][:limit]:
        a = load_rgb(p, short_side)
        h, w = a.shape[:2]
        y, x = (h - side) // 2, (w - side) // 2
        crops.append(np.ascontiguousarray(a[y:y + side, x:x + side]))
    if not crops:
        return None
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--start-stage", type=int, default=0, help="skip stages before this one (their outputs exist)")
    a = p.parse_args(argv)
    r, out = setup(a)
    from napari_fast_style.engine import evaluate_sr, load_model, run_sync
    from napari_fast_style.engine.data import ContentSet
    from napari_fast_style.engine.superres import SRTrainConfig, train_sr_iter
    from napari_fast_style.engine.training import LoopConfig

    config = {k: tuple(v) if isinstance(v, list) else v for k, v in r.get("config", {}).items()}
    # "stages": loop settings run one after the other, each starting from the previous stage's model
    stages = r.get("stages") or [r.get("loop", {})]
    content = None
    previous = None
    res = None
    histories = []

    def log_losses(pr):
        if pr.step % 25 == 0:
            logging.info("step %d  %s", pr.step, " ".join(f"{k} {v:.4f}" for k, v in pr.losses.items()))

    for i, loop in enumerate(stages):
        target = out if i == len(stages) - 1 else out.with_suffix(f".stage{i}.safetensors")
        if i < a.start_stage:
            previous = target
            continue
        cfg = SRTrainConfig(**config, loop=LoopConfig(**loop))
        if content is None:
            t = time.perf_counter()
            content = ContentSet.from_folder(a.data / "train", cfg.content_size, exclude_holdout=0.1,
                                             limit=r.get("content_limit"))
            logging.info("%d training photos loaded in %.1f s", len(content), time.perf_counter() - t)
        gen = train_sr_iter(target, content=content, config=cfg, vgg=a.vgg if cfg.loss == "perceptual" else None,
                            name=r.get("name"), resume=a.resume and i == len(stages) - 1, init_from=previous)
        res = run_sync(gen, log_losses)
        logging.info("stage %d: saved %s after %d steps, %.0f s", i, res.path, res.steps, res.seconds)
        histories.append(res.history)
        previous = res.path
    heldout = {}
    crops = heldout_crops(a.data / "train", cfg.content_size, 24 * cfg.scale, int(r.get("eval_images", 16)))
    if crops is not None:
        heldout = {"images": int(crops.shape[0]), **evaluate_sr(load_model(res.path)[0], crops)}
        logging.info("held-out: %s", " ".join(f"{k} {v:.4f}" for k, v in heldout.items()))
    out.with_suffix(".history.json").write_text(json.dumps({"history": histories, "heldout": heldout}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
