"""Training: one loop (budget, Adam, AMP, seed, checkpoint/resume, progress, cancel) and the
Johnson et al. (2016) perceptual-loss recipe for style networks on top of it.

Checkpoints are plain dicts of tensors and numbers written with ``torch.save`` to a temporary file
and renamed into place, and read back with ``torch.load(weights_only=True)``: an interrupted run
never leaves a half-written file, and resuming never executes code from the file.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Generator, Optional, Sequence, Union

import numpy as np
import torch

from src_models import transformer_net

from .data import ContentSet, DataError, load_rgb, sample_images
from .device import autocast, resolve_device, resolve_precision
from .losses import content_loss, gram, style_loss, tv_loss
from .models import ModelError, default_vgg_path, load_vgg, save_model, user_model_dir
from .progress import CancelToken, Progress, atomic_write

log = logging.getLogger(__name__)

STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
#: the schedule style training uses unless told otherwise (API, Train widget; the CLI's ``train`` default,
#: kept free of a torch import at parse time, says the same)
STYLE_LR_SCHEDULE = "linear"
#: crops (a multiple of 8) whose mean own style distance scales the per-photo style loss (style_norm "photo"),
#: drawn with their own fixed seed: the same crops whatever the run's seed, so a style weight means the same
#: in every run on one content set
PHOTO_PROBE, PHOTO_PROBE_SEED = 64, 0


@dataclass(frozen=True)
class LoopConfig:
    """What every training run shares."""

    steps: Optional[int] = None
    minutes: Optional[float] = None
    lr: float = 1e-3
    #: "constant", or "linear": the learning rate falls linearly to zero over the budget (steps or
    #: minutes, whichever is nearer its end), the schedule budget-limited training does best with
    #: (Li et al. 2020, "Budgeted Training")
    lr_schedule: str = "constant"
    seed: int = 0
    checkpoint_every: int = 100
    preview_every: int = 50
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self):
        if self.steps is None and self.minutes is None:
            raise ValueError("give a budget: steps or minutes")
        if self.steps is not None and self.steps < 1:
            raise ValueError("steps must be >= 1")
        if self.minutes is not None and self.minutes <= 0:
            raise ValueError("minutes must be > 0")
        if self.lr_schedule not in ("constant", "linear"):
            raise ValueError(f"lr_schedule must be 'constant' or 'linear', got {self.lr_schedule!r}")


@dataclass
class TrainResult:
    path: Path
    steps: int
    seconds: float
    cancelled: bool
    history: list = field(default_factory=list)


def checkpoint_path(out_path: Path) -> Path:
    return Path(out_path).with_suffix(".ckpt.pt")


def _atomic_torch_save(obj, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def param_groups(net: torch.nn.Module, lr: float) -> list[dict]:
    """Adam parameter groups: one, plus one per learning-rate multiplier the network asks for
    (``net.lr_scales()``: ``{parameter name: multiplier}``, e.g. a wide final layer)."""
    scales = net.lr_scales() if hasattr(net, "lr_scales") else {}
    named = dict(net.named_parameters())
    return ([{"params": [p for n, p in named.items() if n not in scales], "lr_scale": 1.0}]
            + [{"params": [named[n]], "lr": lr * s, "lr_scale": float(s)} for n, s in scales.items()])


def train_loop(
    net: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module, torch.Tensor], tuple[torch.Tensor, dict]],
    batch_fn: Callable[[torch.Generator], torch.Tensor],
    cfg: LoopConfig,
    out_path: Path,
    save_fn: Callable[[torch.nn.Module, Path, dict], Path],
    preview_fn: Optional[Callable[[torch.nn.Module], np.ndarray]] = None,
    cancel: Optional[CancelToken] = None,
    resume: bool = False,
    fingerprint: Optional[dict] = None,
) -> Generator[Progress, None, TrainResult]:
    """Generic optimisation loop. ``loss_fn(net, batch) -> (total, {name: float})``.

    The budget is ``cfg.steps`` and/or ``cfg.minutes`` (whichever ends first, counting the time of
    a resumed run). Every ``checkpoint_every`` steps and at the end a checkpoint is written; the
    model file is written at the end, also when cancelled.
    """
    device = resolve_device(cfg.device)
    amp = resolve_precision(cfg.precision, device)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    net.to(device).train()
    opt = torch.optim.Adam(param_groups(net, cfg.lr), lr=cfg.lr)
    ckpt = checkpoint_path(out_path)
    step, elapsed, history = 0, 0.0, []
    if resume:
        if not ckpt.is_file():
            raise ModelError(f"nothing to resume: {ckpt} does not exist")
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        if fingerprint is not None and state.get("fingerprint") != fingerprint:
            raise ModelError(f"{ckpt.name} belongs to a different training setup; start a new run or use the same settings")
        net.load_state_dict(state["model"])
        try:
            opt.load_state_dict(state["optimizer"])
        except ValueError as e:  # parameter groups differ: a checkpoint of an older version of this loop
            raise ModelError(f"{ckpt.name} was written by another version of the training loop ({e}); "
                             "start a new run (fine-tune from its model file instead)") from None
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        step, elapsed = int(state["step"]), float(state["elapsed"])
        history = [dict(h) for h in state.get("history", [])]
        log.info("resumed %s at step %d (%.0f s)", ckpt, step, elapsed)

    def write_checkpoint():
        _atomic_torch_save({"model": net.state_dict(), "optimizer": opt.state_dict(), "generator": gen.get_state(),
                            "torch_rng": torch.get_rng_state(), "step": step, "elapsed": elapsed,
                            "history": history, "fingerprint": fingerprint}, ckpt)

    total = cfg.steps or 0
    budget_s = cfg.minutes * 60 if cfg.minutes is not None else float("inf")
    cancelled = False
    t0 = time.perf_counter() - elapsed
    while (cfg.steps is None or step < cfg.steps) and elapsed < budget_s:
        if cancel is not None and cancel.cancelled:
            cancelled = True
            break
        if cfg.lr_schedule == "linear":
            done = max(step / cfg.steps if cfg.steps else 0.0, elapsed / budget_s)
            for g in opt.param_groups:
                g["lr"] = cfg.lr * g.get("lr_scale", 1.0) * max(0.0, 1.0 - done)
        batch = batch_fn(gen).to(device)
        with autocast(device, amp):
            loss, parts = loss_fn(net, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        elapsed = time.perf_counter() - t0
        parts = {k: float(v) for k, v in parts.items()}
        history.append({"step": step, "seconds": round(elapsed, 3), "lr": opt.param_groups[0]["lr"], **parts})
        preview = None
        if preview_fn is not None and cfg.preview_every and step % cfg.preview_every == 0:
            net.eval()
            preview = preview_fn(net)
            net.train()
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
            write_checkpoint()
        if total:
            shown_total = total
        else:  # wall-clock budget: report progress in seconds-equivalent steps
            shown_total = max(step, int(step * budget_s / max(elapsed, 1e-6)))
        yield Progress("train", step, shown_total, losses=parts, preview=preview,
                       message=f"step {step}, {elapsed:.0f} s")
    write_checkpoint()
    net.eval()
    path = save_fn(net, out_path, {"steps": step, "seconds": round(elapsed, 1)})
    return TrainResult(path=path, steps=step, seconds=elapsed, cancelled=cancelled, history=history)


# ----------------------------------------------------------------------------- style recipe
@dataclass(frozen=True)
class StyleTrainConfig:
    """Johnson et al. perceptual-loss training of one style.

    ``style_weight`` is the style <-> content control: the weight of the (relative) style loss
    against a content weight of 1. Losses are relative (see :mod:`.losses`), so the same number means
    the same balance at any size. A multi-style network may take one weight per style image (in their
    order): each style then gets its own balance, since paintings differ in how far they pull a photo.
    """

    arch: str = "fast"
    size: int = 256
    batch_size: int = 4
    #: one number, or one per style image (a multi-style network)
    style_weight: Union[float, tuple] = 5.0
    content_weight: float = 1.0
    tv_weight: float = 1.0
    content_layer: str = "relu3_3"
    style_layers: tuple = STYLE_LAYERS
    style_size: int = 512
    content_size: int = 512
    scale_range: tuple = (0.75, 1.25)
    #: "photo": each image's style loss is divided by its photo's own style distance (how far the photo was
    #: from the painting), so every photo is pulled the same *fraction* of its way, as the gap-closed yardstick
    #: measures; their mean over 64 fixed crops keeps the style weight on the same scale. "none": plain mean.
    style_norm: str = "none"
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(steps=1000, lr_schedule=STYLE_LR_SCHEDULE))

    def __post_init__(self):
        if self.size < 32 or self.size % 8:
            raise ValueError("training size must be a multiple of 8, at least 32")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.style_size < 32:
            raise ValueError("style_size must be at least 32 pixels")
        if self.style_norm not in ("none", "photo"):
            raise ValueError(f"style_norm must be 'none' or 'photo', got {self.style_norm!r}")
        if isinstance(self.style_weight, list):
            object.__setattr__(self, "style_weight", tuple(self.style_weight))
        weights = self.style_weights()
        if not weights or min(weights) <= 0 or self.content_weight < 0 or self.tv_weight < 0:
            raise ValueError("loss weights must be non-negative (style weight positive)")

    def style_weights(self, n_styles: Optional[int] = None) -> tuple:
        """The style weight of each style: one number repeated, or the per-style ones (checked
        against ``n_styles`` when given)."""
        sw = self.style_weight
        weights = tuple(float(w) for w in sw) if isinstance(sw, (list, tuple)) else (float(sw),)
        if n_styles is None:
            return weights
        if len(weights) == 1:
            return weights * n_styles
        if len(weights) != n_styles:
            raise ValueError(f"{len(weights)} style weights for {n_styles} style images: give one, or one per style")
        return weights


def style_targets(vgg, style_rgb01: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """Gram matrices of the style image (computed once)."""
    with torch.no_grad():
        feats = vgg(style_rgb01)
    return {k: gram(feats[k].float())[0] for k in layers}


def _image_to_tensor(img: np.ndarray, short_side: Optional[int]) -> torch.Tensor:
    from PIL import Image

    from .data import to_rgb_uint8

    a = to_rgb_uint8(img)
    if short_side:
        h, w = a.shape[:2]
        s = short_side / min(h, w)
        a = np.asarray(Image.fromarray(a).resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC))
    return torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1)[None].float() / 255.0


def resolve_content(content, short_side: int) -> ContentSet:
    """``content``: a folder, a list of arrays, a :class:`ContentSet`, or None (scikit-image samples)."""
    if isinstance(content, ContentSet):
        return content
    if content is None:
        return ContentSet(sample_images(), short_side)
    if isinstance(content, (str, os.PathLike)):
        return ContentSet.from_folder(Path(content), short_side)
    return ContentSet(list(content), short_side)


def train_style_iter(
    style_image,
    out_path,
    *,
    content=None,
    config: Optional[StyleTrainConfig] = None,
    vgg=None,
    name: Optional[str] = None,
    preview_image: Optional[np.ndarray] = None,
    cancel: Optional[CancelToken] = None,
    resume: bool = False,
    init_from=None,
) -> Generator[Progress, None, TrainResult]:
    """Train a style network; yields :class:`Progress` (losses, periodic previews); returns a
    :class:`TrainResult` whose ``path`` is a model :func:`stylize` accepts.

    ``style_image``: a path or an image array (any dtype, grey/RGB/RGBA), or a list of them (optionally
    ``(image, name)`` pairs) to train one conditional-instance-norm network holding all those styles. ``vgg``: a loaded
    :class:`~src_models.VGGFeatures`, a weights path, or None for ``$NAPARI_FAST_STYLE_VGG``.
    """
    cfg = config or StyleTrainConfig()
    out_path = Path(out_path)
    if out_path.suffix != ".safetensors":
        raise ModelError(f"model files end in .safetensors, got {out_path.name}")
    multi = isinstance(style_image, (list, tuple)) and not (
        isinstance(style_image, tuple) and len(style_image) == 2 and isinstance(style_image[1], str))
    items = list(style_image) if multi else [style_image]
    if not items:
        raise DataError("give at least one style image")
    styles: list[tuple[np.ndarray, str]] = []
    for k, item in enumerate(items):
        label = None
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], str):
            item, label = item
        if isinstance(item, (str, os.PathLike)):
            p = Path(item)
            if not p.is_file():
                raise DataError(f"style image not found: {p}")
            styles.append((load_rgb(p), label or p.stem))
        else:
            styles.append((np.asarray(item), label or (name if not multi else f"style{k + 1}") or out_path.stem))
    style_name = name or (styles[0][1] if not multi else out_path.stem)
    style_weights = cfg.style_weights(len(styles))
    content_set = resolve_content(content, cfg.content_size)
    device = resolve_device(cfg.loop.device)
    layers = tuple(dict.fromkeys((*cfg.style_layers, cfg.content_layer)))
    if vgg is None or isinstance(vgg, (str, os.PathLike)):
        path = vgg or default_vgg_path()
        if path is None:
            raise ModelError("no VGG16 weights: pass vgg=PATH or set NAPARI_FAST_STYLE_VGG")
        vgg = load_vgg(path, layers)
    vgg = vgg.to(device).to(memory_format=torch.channels_last)  # faster convolutions (oneDNN, tensor cores)
    all_targets = [style_targets(vgg, _image_to_tensor(a, cfg.style_size).to(device), cfg.style_layers)
                   for a, _ in styles]
    n_styles = len(styles)
    torch.manual_seed(cfg.loop.seed)  # the initial weights are part of the seeded run
    net = transformer_net(cfg.arch, n_styles=n_styles)
    if init_from is not None:  # fine-tune: start from a saved model of the same architecture
        from .models import load_model

        start, start_entry = load_model(init_from)
        if start_entry.arch != cfg.arch:
            raise ModelError(f"cannot fine-tune a {start_entry.arch!r} model as {cfg.arch!r}")
        if getattr(start, "n_styles", 1) != n_styles:
            raise ModelError(f"cannot fine-tune a {start.n_styles}-style model into a {n_styles}-style one "
                             "(merge single-style models with merge_styles first)")
        net.load_state_dict(start.state_dict())
    if preview_image is None:
        preview_t = content_set.images[0][None].float() / 255.0
    else:
        preview_t = _image_to_tensor(preview_image, 256)

    photo_norm = cfg.style_norm == "photo"
    photo_scale = None
    if photo_norm:  # the photos' mean own style distance (per style), from fixed seeded crops: resume-safe
        # the distances spread widely (std ~0.6 of the mean): with crops drawn from the run's seed, 8 (or 32)
        # of them moved the effective style weight by up to 16 % (14 %) between seeds
        gen, sums = torch.Generator().manual_seed(PHOTO_PROBE_SEED), [0.0] * n_styles
        with torch.no_grad():
            for _ in range(PHOTO_PROBE // 8):
                probe = content_set.batch(8, cfg.size, gen, cfg.scale_range)
                for part in probe.split(2):  # two at a time: a 512 px probe then peaks below a training step
                    fp = vgg(part.to(device).contiguous(memory_format=torch.channels_last))
                    for k, t in enumerate(all_targets):
                        sums[k] += float(style_loss(fp, t, reduction="none").sum())
        photo_scale = [v / PHOTO_PROBE for v in sums]

    def loss_fn(model, x):
        # several styles (Dumoulin et al. 2017): one style per step, drawn from the seeded torch RNG
        k = int(torch.randint(n_styles, (1,))) if n_styles > 1 else 0
        sw = torch.nn.functional.one_hot(torch.tensor(k), n_styles).float().to(x.device) if n_styles > 1 else None
        y = model(x * 255.0, sw) / 255.0
        fy = vgg(y.contiguous(memory_format=torch.channels_last))
        with torch.no_grad():
            fx = vgg(x.contiguous(memory_format=torch.channels_last), upto=None if photo_norm else cfg.content_layer)
        per_image = style_loss(fy, all_targets[k], reduction="none")
        s = per_image.mean()
        s_opt = s
        if photo_norm:
            with torch.no_grad():
                own = style_loss(fx, all_targets[k], reduction="none").clamp_min(1e-6)
            s_opt = (per_image / own).mean() * photo_scale[k]
        c = content_loss(fy[cfg.content_layer], fx[cfg.content_layer])
        t = tv_loss(y)
        total = style_weights[k] * s_opt + cfg.content_weight * c + cfg.tv_weight * t
        return total, {"total": total.detach(), "style": s.detach(), "content": c.detach(), "tv": t.detach()}

    def batch_fn(gen):
        return content_set.batch(cfg.batch_size, cfg.size, gen, cfg.scale_range)

    preview_w = torch.full((n_styles,), 1.0 / n_styles, device=device) if n_styles > 1 else None

    def preview_fn(model):
        with torch.no_grad():
            y = model(preview_t.to(device) * 255.0, preview_w) / 255.0
        return y[0].clamp(0, 1).permute(1, 2, 0).float().cpu().numpy()

    recipe = {k: v for k, v in asdict(cfg).items() if k != "loop"}
    recipe.update(loop={k: v for k, v in asdict(cfg.loop).items() if k not in ("device",)},
                  losses="relative Gram (style) + relative feature (content) + TV; Johnson et al. 2016",
                  vgg=vgg.preprocess.convention, content_images=len(content_set))
    fingerprint = {"arch": cfg.arch, "style_shapes": [list(a.shape) for a, _ in styles], "size": cfg.size,
                   "style_weight": cfg.style_weight}
    if init_from is not None:
        recipe["init_from"] = Path(init_from).name
    if photo_scale is not None:
        recipe["photo_scale"] = [round(v, 6) for v in photo_scale]

    def save_fn(model, path, info):
        names = tuple(n for _, n in styles) if n_styles > 1 else (style_name,)
        return save_model(model, path, kind="style", arch=cfg.arch, display_name=style_name.replace("_", " "),
                          styles=names, recipe={**recipe, **info})

    return (yield from train_loop(net, loss_fn, batch_fn, cfg.loop, out_path, save_fn, preview_fn, cancel,
                                  resume, fingerprint))


def merge_styles(models: Sequence, out_path, *, display_name: Optional[str] = None) -> Path:
    """One conditional-instance-norm network from several single-style models of one architecture.

    Each style keeps its own instance-norm scale and shift (Dumoulin et al. 2017: those carry the
    style); the convolution weights are averaged, which is sound when the models were fine-tuned from
    one parent (Wortsman et al. 2022, "model soups") and is the starting point for a short multi-style
    fine-tune. ``models``: names or paths; returns the saved model's path.
    """
    from .models import find_model, load_model

    if len(models) < 2:
        raise ModelError("merging needs at least two style models")
    entries = [find_model(m, kind="style") for m in models]
    arch = entries[0].arch
    if any(e.arch != arch or len(e.styles) > 1 for e in entries):
        raise ModelError("merging needs single-style models of one architecture")
    states = [load_model(e)[0].state_dict() for e in entries]
    net = transformer_net(arch, n_styles=len(entries))
    merged = {}
    for k, v in net.state_dict().items():
        vals = [st[k].float() for st in states]
        merged[k] = torch.stack(vals) if v.dim() == vals[0].dim() + 1 else torch.stack(vals).mean(0)
    net.load_state_dict(merged)
    names = tuple(e.styles[0] if e.styles else e.name for e in entries)
    return save_model(net, out_path, kind="style", arch=arch, display_name=display_name or Path(out_path).stem,
                      styles=names, recipe={"merged_from": [e.name for e in entries],
                                            "method": "per-style instance norm, averaged convolutions"})


def train_style(style_image, out_path=None, *, content=None, arch: str = "fast", size: int = 256,
                steps: Optional[int] = None, minutes: Optional[float] = None, style_weight=None,
                seed: int = 0, device: str = "auto", vgg=None, resume: bool = False, init_from=None,
                **kwargs) -> Path:
    """Train a new style and save it; returns the model path (listed by :func:`list_models` when it
    is in the user model dir, and accepted by :func:`stylize` as ``model=path``).

    ``style_weight``: the style <-> content balance (default 5); with a list of style images, one
    number or one per image. ``init_from``: a style model (name or path) to fine-tune instead of
    starting from scratch; its architecture replaces ``arch``. Other keyword arguments:
    :class:`StyleTrainConfig` and :class:`LoopConfig` fields; the learning rate (``lr``, default 1e-3)
    falls linearly to zero over the budget unless ``lr_schedule="constant"``."""
    from .models import find_model
    from .progress import run_sync

    start = find_model(init_from, kind="style") if init_from is not None else None
    if start is not None:
        arch = start.arch
    if steps is None and minutes is None:
        steps = 1000
    loop = LoopConfig(steps=steps, minutes=minutes, seed=seed, device=device,
                      **{"lr_schedule": STYLE_LR_SCHEDULE,
                         **{k: kwargs.pop(k) for k in list(kwargs) if k in LoopConfig.__dataclass_fields__}})
    cfg = StyleTrainConfig(arch=arch, size=size, loop=loop,
                           **({"style_weight": style_weight} if style_weight is not None else {}), **kwargs)
    if out_path is None:
        stem = Path(style_image).stem if isinstance(style_image, (str, os.PathLike)) else "style"
        out_path = user_model_dir() / f"{stem}-{arch}.safetensors"
    return run_sync(train_style_iter(style_image, out_path, content=content, config=cfg, vgg=vgg,
                                     resume=resume, init_from=start.path if start else None)).path
