"""Retrain a bundled model from its recipe: ``python -m src_models.recipes.train RECIPE.json``.

A recipe names the style painting (relative to the data root), the training settings and the output
file, and optionally ``init_from``: a bundled model (file name in ``src_models/weights``) to start from.
A multi-style recipe lists several paintings and ``merge_from``: the bundled single-style models to
merge (:func:`napari_fast_style.engine.merge_styles`) as the starting point. Data root: ``--data``
(default ``../shared/data`` beside the repository). The held-out split of the photographs
(``napari_fast_style.engine.data.is_holdout``) is never trained on.

Bundled models get retrained, so a start file named today may not be the one a recipe was trained from.
``start_sha256`` pins each start file (``{"file name": sha256}``): a file that differs is looked up in the
repository's git history (``git log`` of that file) and the matching version is used, with a log line
saying so; when no version matches, the runner stops with exit code 2 before training anything.

A stage may end with ``"interpolate": {"from_stage": k, "alpha": a}``: its trained weights are blended with
stage ``k``'s output in weight space, ``(1 - a) * stage_k + a * trained`` (Wortsman et al. 2022, "WiSE-FT"),
and the blend is that stage's output, the start of the next stage. A top-level ``interpolate`` (older
recipes) means the same on the last stage. ``"average": [[k1, w1], [k2, w2], ...]`` generalises it to a soup
of several earlier stages' outputs, ``w1 * stage_k1 + w2 * stage_k2 + ... + (1 - sum w) * trained``
(Wortsman et al. 2022, "Model soups"); ``interpolate`` is ``average`` with one entry, ``[[k, 1 - a]]``.
``"start_from_stage": k`` trains a stage from stage ``k``'s output instead of the stage before it, so
several stages can start from one point (siblings with other seeds or weights) and a later stage average them.
"""
from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ._common import WEIGHTS, parser, setup


class RecipeError(Exception):
    """A recipe that cannot be run as written (exit code 2)."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def start_file(weights: Path, name: str, expected: str | None, scratch: Path) -> Path:
    """The start file ``name`` (in ``weights``) as it was when the recipe was trained.

    ``expected``: its sha256 from the recipe (``None``: take the file as it is). A file that differs is
    searched for in git history (newest first); the matching version is written to ``scratch``.
    """
    path = weights / name
    if expected is None or (path.is_file() and _sha256(path.read_bytes()) == expected):
        if not path.is_file():
            raise RecipeError(f"start file not found: {path}")
        return path
    try:
        commits = subprocess.run(["git", "-C", str(weights), "log", "--format=%H", "--", name],
                                 capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        commits = []
    for c in commits:
        blob = subprocess.run(["git", "-C", str(weights), "show", f"{c}:./{name}"], capture_output=True)
        if blob.returncode == 0 and _sha256(blob.stdout) == expected:
            out = scratch / name
            out.write_bytes(blob.stdout)
            logging.info("%s changed since this recipe was trained: using its version of commit %s", name, c[:10])
            return out
    raise RecipeError(f"{path} is not the file this recipe was trained from (sha256 {expected[:12]}...) and no "
                      "version in its git history matches; put that version back, or delete its start_sha256 entry to start "
                      "from the file as it is now")


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--start-stage", type=int, default=0, help="skip stages before this one (their outputs exist)")
    p.add_argument("--weights", type=Path, default=WEIGHTS,
                   help="where init_from / merge_from start files are (default: src_models/weights)")
    a = p.parse_args(argv)
    r, out = setup(a)
    with tempfile.TemporaryDirectory() as scratch:
        try:
            return run(a, r, out, Path(scratch))
        except RecipeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2


def run(a, r: dict, out: Path, scratch: Path) -> int:
    from napari_fast_style.engine.data import ContentSet
    from napari_fast_style.engine.training import LoopConfig, StyleTrainConfig, train_style_iter

    stages = r.get("stages") or [{"config": r.get("config", {}), "loop": r.get("loop", {})}]
    content = None
    pins = r.get("start_sha256", {})
    previous = None
    # "init_from": fine-tune from another bundled model (a file in src_models/weights) instead of from scratch
    if r.get("init_from") and not a.start_stage:
        previous = start_file(a.weights, r["init_from"], pins.get(r["init_from"]), scratch)
    if r.get("merge_from") and not a.start_stage:  # multi-style: start from the bundled single-style models, merged
        from napari_fast_style.engine import merge_styles

        previous = merge_styles([start_file(a.weights, f, pins.get(f), scratch) for f in r["merge_from"]],
                                out.with_suffix(".merged.safetensors"))
    # "style": one painting, or a list of paintings for one multi-style (conditional instance norm) network
    style = ([a.data / "styles" / f for f in r["style"]] if isinstance(r["style"], list)
             else a.data / "styles" / r["style"])
    if r.get("interpolate"):  # older recipes: one interpolation, after the last stage
        stages = [*stages[:-1], {**stages[-1], "interpolate": r["interpolate"]}]
    mixes = [_mix(i, s) for i, s in enumerate(stages)]
    for i, stage in enumerate(stages):
        k = stage.get("start_from_stage")
        if k is not None and not 0 <= int(k) < i:
            raise RecipeError(f"stage {i}: start_from_stage must name an earlier stage, not {k}")
    histories = []
    for i, stage in enumerate(stages):
        target = out if i == len(stages) - 1 else out.with_suffix(f".stage{i}.safetensors")
        if a.start_stage and i < a.start_stage:
            previous = target
            continue
        if stage.get("start_from_stage") is not None:
            previous = out.with_suffix(f".stage{int(stage['start_from_stage'])}.safetensors")
        loop = LoopConfig(**stage.get("loop", {}))
        cfg = StyleTrainConfig(**{k: tuple(v) if isinstance(v, list) else v
                                  for k, v in stage.get("config", {}).items()}, loop=loop)
        if content is None:
            t = time.perf_counter()
            content = ContentSet.from_folder(a.data / "train", cfg.content_size, exclude_holdout=0.1,
                                             limit=r.get("content_limit"))
            logging.info("%d content images loaded in %.1f s", len(content), time.perf_counter() - t)
        mix, own = mixes[i]
        trained = out.with_suffix(f".stage{i}.trained.safetensors") if mix else target
        gen = train_style_iter(style, trained, content=content, config=cfg, vgg=a.vgg,
                               name=r.get("name"), resume=a.resume and i == len(stages) - 1, init_from=previous)
        while True:
            try:
                pr = next(gen)
            except StopIteration as s:
                res = s.value
                break
            if pr.step % 25 == 0:
                logging.info("stage %d step %d  %s", i, pr.step,
                             " ".join(f"{k} {v:.4f}" for k, v in pr.losses.items()))
        logging.info("stage %d: saved %s after %d steps, %.0f s", i, res.path, res.steps, res.seconds)
        histories.append(res.history)
        if mix:
            _average([(out.with_suffix(f".stage{k}.safetensors"), w) for k, w in mix], res.path, own, target,
                     stages[:i + 1])
            logging.info("averaged stage %d with %s -> %s", i,
                         ", ".join(f"stage {k} ({w:.3g})" for k, w in mix), target)
        previous = target
    if r.get("merge_from"):
        out.with_suffix(".merged.safetensors").unlink(missing_ok=True)
    if histories:
        out.with_suffix(".history.json").write_text(json.dumps(histories))
    return 0


def _mix(i: int, stage: dict) -> tuple[list[tuple[int, float]], float]:
    """A stage's ``average`` (or ``interpolate``) as ``[(earlier stage, weight), ...]`` (empty when it has none)
    and the trained stage's own share, ``1 - sum(weights)`` (``alpha`` itself for ``interpolate``)."""
    if "interpolate" in stage and "average" in stage:
        raise RecipeError(f"stage {i}: give interpolate or average, not both")
    if "interpolate" in stage:
        mix = [(stage["interpolate"]["from_stage"], 1 - float(stage["interpolate"]["alpha"]))]
    else:
        mix = [tuple(e) for e in stage.get("average", [])]
    for k, w in mix:
        if not 0 <= int(k) < i:
            raise RecipeError(f"stage {i}: interpolate/average from_stage must name an earlier stage, not {k}")
        if not 0 < float(w) < 1:
            raise RecipeError(f"stage {i}: each averaging weight must lie between 0 and 1, not {w}")
    if mix and sum(float(w) for _, w in mix) >= 1:
        raise RecipeError(f"stage {i}: the averaging weights must leave the trained stage a share (sum < 1)")
    own = float(stage["interpolate"]["alpha"]) if "interpolate" in stage else 1 - sum(float(w) for _, w in mix)
    return [(int(k), float(w)) for k, w in mix], own


def _average(parts: list[tuple[Path, float]], trained: Path, own: float, out: Path, stages: list) -> None:
    """Weight-space average ``sum(w * part) + own * trained`` saved as ``out`` (Wortsman et al. 2022)."""
    from napari_fast_style.engine import load_model, save_model

    b, entry = load_model(trained)
    sb = b.state_dict()
    mixed = {k: own * v for k, v in sb.items()}
    for path, w in parts:
        for k, v in load_model(path)[0].state_dict().items():
            mixed[k] = mixed[k] + w * v
    b.load_state_dict(mixed)
    meta = entry.metadata
    save_model(b, out, kind="style", arch=meta["arch"], display_name=meta["display_name"],
               styles=tuple(meta["styles"]), recipe={**meta["recipe"], "stages": stages})


if __name__ == "__main__":
    sys.exit(main())
