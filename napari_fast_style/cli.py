"""``napari-fast-style`` command line: stylize, super-resolve, train, and manage models (engine only, no Qt).

Bad arguments, unreadable files and unknown models print one line on stderr and exit with code 2.
Outputs are written atomically (temporary file + rename): a failed or interrupted run never leaves a
half-written file.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what `yes | head` reports for `yes`
SAMPLES = ("astronaut", "coffee")


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line, exit 2 (argparse's own default code is 2 as well)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


# ----------------------------------------------------------------------------- image files
def read_image(path: Path) -> np.ndarray:
    """PNG/JPEG/BMP/WebP via Pillow; TIFF (also stacks) via tifffile. Never rescales."""
    if not path.is_file():
        raise CLIError(f"{path}: no such file")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            return tifffile.imread(path)
        from PIL import Image

        with Image.open(path) as im:
            if im.mode in ("P", "CMYK", "YCbCr", "LAB", "HSV", "1"):
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            return np.array(im)
    except CLIError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder error is a user-facing "cannot read"
        raise CLIError(f"{path}: cannot read image ({e.__class__.__name__}: {e})") from None


def write_image(path: Path, data: np.ndarray) -> None:
    """Write atomically. PNG/JPEG need 2D or RGB(A) uint8 (or uint16 grey PNG); TIFF takes anything."""
    from .engine.progress import atomic_write

    suffix = path.suffix.lower()
    if suffix not in (".tif", ".tiff") and data.ndim > 3:
        raise CLIError(f"{path.name}: a stack needs a .tif output")

    def write(tmp: str) -> None:
        if suffix in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(tmp, data, photometric="rgb" if data.ndim >= 3 and data.shape[-1] in (3, 4) else None)
            return
        from PIL import Image

        arr = data if data.dtype == np.uint8 else (np.clip(data, 0, 1) * 255 + 0.5).astype(np.uint8)
        if suffix in (".jpg", ".jpeg") and arr.ndim == 3 and arr.shape[-1] == 4:
            arr = arr[..., :3]
        Image.fromarray(arr).save(tmp, format=None if suffix else "PNG",
                                  **({"quality": 95} if suffix in (".jpg", ".jpeg") else {}))

    atomic_write(path, write, suffix=suffix or ".tmp")


def sample_image(name: str) -> np.ndarray:
    from skimage import data as skdata

    return np.asarray(getattr(skdata, name)())


# ----------------------------------------------------------------------------- commands
def _default_model() -> str:
    from .engine import list_models

    models = list_models("style")
    if not models:
        raise CLIError("no style models installed")
    from .engine.models import DEFAULT_STYLE

    if any(m.name == DEFAULT_STYLE for m in models):
        return DEFAULT_STYLE
    fast = [m for m in models if m.arch == "fast" and m.source == "bundled"]
    return (fast or models)[0].name


def cmd_stylize(a) -> int:
    from .engine import CancelToken, StylizeConfig, find_model, load_model, resolve_device, stylize_iter

    inputs: list[tuple[str, Optional[Path]]] = []
    if a.sample:
        inputs.append((SAMPLES[0], None))
    inputs += [(str(p), Path(p)) for p in a.inputs]
    if not inputs:
        raise CLIError("give input images or --sample")
    if a.output is None:
        raise CLIError("give an output with -o (a file, or a folder for several inputs)")
    out = Path(a.output)
    many = len(inputs) > 1
    if many and out.suffix:
        raise CLIError("several inputs need -o to be a folder")
    weights = None
    if a.style_weights:
        try:
            weights = {k: float(v) for k, v in (s.split(":") for s in a.style_weights.split(","))}
        except ValueError:
            raise CLIError("--style-weights takes NAME:WEIGHT,NAME:WEIGHT") from None
    cfg = StylizeConfig(strength=a.strength, preserve_color=a.preserve_color, tile=a.tile, device=a.device,
                        precision=a.precision, share_stats=a.share_stats)
    # read every input first: a bad one fails the run before anything is loaded or written
    images = [(name, sample_image(name) if path is None else read_image(path)) for name, path in inputs]
    model = a.model or _default_model()
    entry = find_model(model, kind="style")
    net, _ = load_model(entry, device=resolve_device(a.device))
    report = []
    for name, img in images:
        t = time.perf_counter()
        gen = stylize_iter(img, entry, cfg, style_weights=weights, net=net, cancel=CancelToken())
        while True:
            try:
                next(gen)
            except StopIteration as s:
                res = s.value
                break
        stem = Path(name).stem
        target = out / f"{stem}-{entry.name}.png" if many else out
        if res.data.ndim > 3 and target.suffix.lower() not in (".tif", ".tiff"):
            target = target.with_suffix(".tif")
        write_image(target, res.data)
        rec = {"input": name, "output": str(target), "model": entry.name, "shape": list(res.data.shape),
               "dtype": str(res.data.dtype), "seconds": round(time.perf_counter() - t, 3),
               "device": res.metadata["napari_fast_style"]["device"], "strength": a.strength,
               "preserve_color": a.preserve_color}
        report.append(rec)
        if not a.json:
            print(f"{name} -> {target}  ({res.data.shape[1]}x{res.data.shape[0]}, {rec['seconds']:.2f} s on "
                  f"{rec['device']}, {entry.name})")
    if a.json:
        print(json.dumps(report if many else report[0], indent=1))
    return 0


def _entry_dict(e) -> dict:
    return {"name": e.name, "kind": e.kind, "arch": e.arch, "display_name": e.display_name,
            "styles": list(e.styles), "source": e.source, "path": str(e.path)}


def cmd_models(a) -> int:
    from .engine import find_model, import_checkpoint, list_models

    if a.models_cmd == "list":
        models = list_models(a.kind)
        if a.json:
            print(json.dumps([_entry_dict(e) for e in models], indent=1))
        else:
            for e in models:
                print(f"{e.name:32s} {e.kind:6s} {e.arch:8s} {e.source:8s} {e.display_name}")
        return 0
    if a.models_cmd == "import":
        e = import_checkpoint(a.file, a.name)
        print(json.dumps(_entry_dict(e), indent=1) if a.json else f"imported {e.name} ({e.arch}) -> {e.path}")
        return 0
    if a.models_cmd == "info":
        e = find_model(a.name)
        info = {**_entry_dict(e), "metadata": e.metadata}
        print(json.dumps(info, indent=1))
        return 0
    raise CLIError("models: choose list, import or info")


def _style_weights_arg(text: str):
    """``--style-weight``: ``W`` or ``W1,W2,...`` (one per style image)."""
    try:
        weights = tuple(float(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or comma-separated numbers: {text!r}") from None
    return weights[0] if len(weights) == 1 else weights


def cmd_train(a) -> int:
    from .engine import find_model, run_sync
    from .engine.training import LoopConfig, StyleTrainConfig, train_style_iter

    styles = [Path(p) for p in a.style]
    for style in styles:
        if not style.is_file():
            raise CLIError(f"{style}: no such style image")
    if a.content is not None:
        from .engine.data import image_files

        image_files(Path(a.content))  # raises DataError for a missing or empty folder
    start = find_model(a.init_from, kind="style") if a.init_from else None
    arch = a.arch or (start.arch if start is not None else "fast")
    out = Path(a.output)
    loop = LoopConfig(steps=a.steps if (a.steps or a.minutes) else 1000, minutes=a.minutes, seed=a.seed,
                      device=a.device, lr=a.lr, lr_schedule=a.lr_schedule)
    cfg = StyleTrainConfig(arch=arch, size=a.size, batch_size=a.batch_size, style_size=a.style_size, loop=loop,
                           style_norm=a.style_norm, **({"style_weight": a.style_weight} if a.style_weight else {}))
    res = run_sync(train_style_iter(styles if len(styles) > 1 else styles[0], out, content=a.content, config=cfg,
                                    vgg=a.vgg, resume=a.resume, init_from=start.path if start else None),
                   _train_progress(a))
    return _train_report(a, res)


def _train_progress(a):
    """A progress callback printing losses to stderr every 10 steps (silent with --json)."""

    def show(p):
        if not a.json and (p.step % 10 == 0 or p.step == 1):
            print(f"step {p.step}/{p.total}  " + "  ".join(f"{k} {v:.4f}" for k, v in p.losses.items()),
                  file=sys.stderr)

    return show


def _train_report(a, res) -> int:
    rec = {"output": str(res.path), "steps": res.steps, "seconds": round(res.seconds, 1),
           "final_losses": res.history[-1] if res.history else {}}
    print(json.dumps(rec, indent=1) if a.json else f"saved {res.path} ({res.steps} steps, {res.seconds:.0f} s)")
    return 0


def _is_tiff(path: Path) -> bool:
    return path.suffix.lower() in (".tif", ".tiff")


def cmd_superres(a) -> int:
    from .engine import SRConfig, describe, run_sync, super_resolve_iter
    from .engine.superres import model_variant, resolve_sr_model

    img = read_image(Path(a.input))
    entry = resolve_sr_model(a.model, a.scale)
    variant = model_variant(entry)
    out = Path(a.output)
    if describe(img).leading and not _is_tiff(out):
        out = out.with_suffix(".tif")  # a stack stays a stack
    if variant == "fidelity" and img.dtype != np.uint8 and not _is_tiff(out):
        raise CLIError(f"{out.name}: the fidelity result keeps the input's {img.dtype} values; write a .tif")
    cfg = SRConfig(tile=a.tile, device=a.device, precision=a.precision)
    t = time.perf_counter()
    res = run_sync(super_resolve_iter(img, entry, cfg, scale=a.scale))
    write_image(out, res.data)
    rec = {"input": a.input, "output": str(out), "model": entry.name, "variant": variant, "scale": a.scale,
           "shape": list(res.data.shape), "dtype": str(res.data.dtype), "seconds": round(time.perf_counter() - t, 3),
           "device": res.metadata["napari_fast_style"]["device"]}
    print(json.dumps(rec, indent=1) if a.json else f"{a.input} -> {out}  (x{a.scale} {variant}, {entry.name}, "
          f"{res.data.shape[1]}x{res.data.shape[0]}, {rec['seconds']:.2f} s on {rec['device']})")
    return 0


def cmd_train_sr(a) -> int:
    from .engine import run_sync
    from .engine.models import default_vgg_path
    from .engine.superres import SRTrainConfig, train_sr_iter
    from .engine.training import LoopConfig

    out = Path(a.output)
    if out.suffix != ".safetensors":
        raise CLIError(f"{out.name}: model files end in .safetensors")
    if a.content is not None:
        from .engine.data import image_files

        image_files(Path(a.content))  # raises DataError for a missing or empty folder
    vgg = None
    if a.loss == "perceptual":
        vgg = a.vgg or default_vgg_path()
        if vgg is None or not Path(vgg).is_file():
            raise CLIError(f"{vgg or '--vgg'}: perceptual training needs VGG16 weights (--vgg PATH or "
                           "$NAPARI_FAST_STYLE_VGG)")
    loop = LoopConfig(steps=a.steps if (a.steps or a.minutes) else 1000, minutes=a.minutes, seed=a.seed,
                      device=a.device, lr=a.lr, lr_schedule=a.lr_schedule)
    cfg = SRTrainConfig(scale=a.scale, loss=a.loss, net=a.net, size=a.size, batch_size=a.batch_size, loop=loop)
    res = run_sync(train_sr_iter(out, content=a.content, config=cfg, vgg=vgg, resume=a.resume), _train_progress(a))
    return _train_report(a, res)


def _style_arg(spec: str) -> tuple[Path, float]:
    """``PATH`` or ``PATH:WEIGHT`` (a trailing ``:number`` is a weight; other colons belong to the path)."""
    head, sep, tail = spec.rpartition(":")
    if sep:
        try:
            return Path(head), float(tail)
        except ValueError:
            pass
    return Path(spec), 1.0


def cmd_optimize(a) -> int:
    from .engine import run_sync
    from .engine.optimize import OptimizeConfig, optimize_iter

    content = read_image(Path(a.content))
    styles = []
    for spec in a.styles:
        path, w = _style_arg(spec)
        if w < 0:
            raise CLIError(f"{spec}: style weights must be >= 0")
        styles.append((read_image(path), w))
    if a.time_limit is not None and a.time_limit <= 0:
        raise CLIError("--time-limit must be a positive number of seconds")
    cfg = OptimizeConfig(iterations=a.iterations, size=a.size, levels=a.levels, preserve_color=a.preserve_color,
                         time_limit=a.time_limit, tile=a.tile,
                         optimizer=a.optimizer, init=a.init, device=a.device, precision=a.precision,
                         **({"style_weight": a.style_weight} if a.style_weight is not None else {}))
    vgg = a.vgg
    if vgg is not None and not Path(vgg).is_file():
        raise CLIError(f"{vgg}: no such VGG weights file")

    def show(p):
        if not a.json and p.step % 10 == 0:
            print(f"iteration {p.step}/{p.total} ({p.message})  " +
                  "  ".join(f"{k} {v:.4f}" for k, v in p.losses.items()), file=sys.stderr)

    t = time.perf_counter()
    res = run_sync(optimize_iter(content, styles, cfg, network=vgg), show)
    out = Path(a.output)
    write_image(out, res.data)
    rec = {"content": a.content, "styles": a.styles, "output": str(out), "shape": list(res.data.shape),
           "iterations": res.iterations, "seconds": round(time.perf_counter() - t, 2), "losses": res.losses}
    print(json.dumps(rec, indent=1) if a.json else f"{a.content} -> {out} ({res.iterations} iterations, "
          f"{rec['seconds']:.1f} s)")
    return 0


def _training_options(p: argparse.ArgumentParser, *, lr: float, lr_schedule: str, vgg_help: str) -> None:
    """Options every training command shares: budget, optimiser, VGG, device, resume, report."""
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int)
    budget.add_argument("--minutes", type=float)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--lr-schedule", choices=("constant", "linear"), default=lr_schedule,
                   help=f"linear: the learning rate falls to zero over the budget (default: {lr_schedule})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vgg", help=vgg_help)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--resume", action="store_true")
    p.add_argument("--json", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="napari-fast-style", description="Neural style transfer for napari, from the command line.")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    s = sub.add_parser("stylize", help="stylize images with a trained style model")
    s.add_argument("inputs", nargs="*", help="image files (PNG, JPEG, TIFF stacks, ...)")
    s.add_argument("--sample", action="store_true", help="use a bundled sample photo (scikit-image astronaut)")
    s.add_argument("-m", "--model", help="model name (see `models list`) or .safetensors path")
    s.add_argument("-o", "--output", help="output file, or folder for several inputs")
    s.add_argument("--strength", type=float, default=1.0, help="0: the original, 1: fully stylized")
    s.add_argument("--preserve-color", action="store_true", help="keep the original colours (luminance only)")
    s.add_argument("--style-weights", help="blend a multi-style model: NAME:W,NAME:W")
    s.add_argument("--tile", type=int, help="tile size in pixels (default: automatic by memory)")
    s.add_argument("--share-stats", action="store_true", help="one set of statistics for all planes of a stack")
    s.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    s.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    s.add_argument("--json", action="store_true", help="print a JSON report")
    s.set_defaults(func=cmd_stylize)

    m = sub.add_parser("models", help="list, import or inspect models")
    msub = m.add_subparsers(dest="models_cmd", required=True, parser_class=_Parser)
    ml = msub.add_parser("list")
    ml.add_argument("--kind", choices=("style", "sr"))
    ml.add_argument("--json", action="store_true")
    mi = msub.add_parser("import", help="import a pytorch/examples .pth/.model checkpoint or a .safetensors model")
    mi.add_argument("file")
    mi.add_argument("--name")
    mi.add_argument("--json", action="store_true")
    mn = msub.add_parser("info")
    mn.add_argument("name")
    m.set_defaults(func=cmd_models)

    o = sub.add_parser("optimize", help="exact stylize: Gatys et al. optimisation with any style image(s)")
    o.add_argument("content", help="content image")
    o.add_argument("styles", nargs="+", metavar="STYLE[:WEIGHT]", help="style images, optionally with blend weights")
    o.add_argument("-o", "--output", required=True)
    o.add_argument("--iterations", type=int, default=300, help="iterations at the final resolution")
    o.add_argument("--size", type=int, default=512, help="longer side of the result")
    o.add_argument("--time-limit", type=float, metavar="SECONDS",
                   help="the run takes at most this many seconds and keeps the best result so far")
    o.add_argument("--levels", type=int, help="coarse-to-fine levels (default: 1 up to 1024 px, +1 per doubling)")
    o.add_argument("--tile", type=int, metavar="PX", help="optimise the final level in overlapping tiles of at most "
                   "PX pixels (default: 1024 px tiles above 2048x2048; 0: never) - large results in bounded memory")
    o.add_argument("--style-weight", type=float,
                   help="style <-> content balance: higher = more style (content weight 1; default 25)")
    o.add_argument("--preserve-color", action="store_true")
    o.add_argument("--optimizer", default="lbfgs", choices=("lbfgs", "adam"))
    o.add_argument("--init", default="matched", choices=("matched", "content", "style", "noise"),
                   help="start from: the content with the style's colours (default), the content, the style, or noise")
    o.add_argument("--vgg", help="VGG16 weights (default: $NAPARI_FAST_STYLE_VGG)")
    o.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    o.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    o.add_argument("--json", action="store_true")
    o.set_defaults(func=cmd_optimize)

    t = sub.add_parser("train", help="train a new style from a painting")
    t.add_argument("style", nargs="+", help="style image file (several: one multi-style network holding them all)")
    t.add_argument("-o", "--output", required=True, help="output .safetensors")
    t.add_argument("--content", help="folder of content photos (default: scikit-image samples)")
    t.add_argument("--arch", choices=("fast", "classic"), help="network (default: fast, or that of --init-from)")
    t.add_argument("--init-from", metavar="MODEL", help="fine-tune an existing style model (name or path) instead of "
                   "starting from scratch: a usable new style in far fewer steps")
    t.add_argument("--size", type=int, default=256, help="training crop size")
    t.add_argument("--style-size", type=int, default=512,
                   help="shorter side the style image is resized to (smaller: larger brush strokes)")
    t.add_argument("--batch-size", type=int, default=4)
    t.add_argument("--style-weight", type=_style_weights_arg, metavar="W[,W...]",
                   help="style <-> content balance (default 5); several style images: one number, or one "
                   "per image (comma-separated, in their order)")
    t.add_argument("--style-norm", choices=("none", "photo"), default="none",
                   help="photo: weigh each photo's style loss by how far that photo was from the painting, so each "
                   "is pulled the same fraction of its way (what the gap-closed yardstick measures; +0.01-0.015 "
                   "of gap at the same content distance when fine-tuning bundled styles)")
    _training_options(t, lr=1e-3, lr_schedule="linear", vgg_help="VGG16 weights (default: $NAPARI_FAST_STYLE_VGG)")
    t.set_defaults(func=cmd_train)

    r = sub.add_parser("superres", help="super-resolve an image or stack x4 or x8")
    r.add_argument("input", help="image file (PNG, JPEG, TIFF stacks, ...)")
    r.add_argument("-o", "--output", required=True, help="output file (.tif keeps uint16/float values)")
    r.add_argument("--scale", type=int, default=4, choices=(4, 8))
    r.add_argument("-m", "--model", default="fidelity",
                   help="fidelity (keeps intensities), perceptual (sharper, invents texture), a model name or path")
    r.add_argument("--tile", type=int, help="tile size in input pixels (default: automatic by memory)")
    r.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    r.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    r.add_argument("--json", action="store_true", help="print a JSON report")
    r.set_defaults(func=cmd_superres)

    ts = sub.add_parser("train-sr", help="train a super-resolution model")
    ts.add_argument("-o", "--output", required=True, help="output .safetensors")
    ts.add_argument("--scale", type=int, default=4, choices=(4, 8))
    ts.add_argument("--loss", default="fidelity", choices=("fidelity", "perceptual"))
    ts.add_argument("--content", help="folder of photos (default: scikit-image samples)")
    ts.add_argument("--net", default="standard", choices=("standard", "light"))
    ts.add_argument("--size", type=int, default=96, help="HR training crop (a multiple of the scale)")
    ts.add_argument("--batch-size", type=int, default=8)
    _training_options(ts, lr=5e-4, lr_schedule="constant",
                      vgg_help="VGG16 weights for --loss perceptual (default: $NAPARI_FAST_STYLE_VGG)")
    ts.set_defaults(func=cmd_train_sr)
    return p


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    from .engine import DataError, ImageError, ModelError

    try:
        return a.func(a)
    except BrokenPipeError:
        # The reader went away (`... | head`): not an error in the user's input. Stop quietly, as shell tools do,
        # and point stdout at /dev/null so the interpreter's final flush does not complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):  # stdout without a file descriptor (main() called from Python)
            pass
        finally:
            os.close(devnull)
        return EXIT_BROKEN_PIPE
    except (CLIError, ModelError, ImageError, DataError, ValueError, OSError) as e:
        print(f"napari-fast-style: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("napari-fast-style: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
