"""Model store: one registry for every weight file the package reads or writes.

* Our models are ``.safetensors`` files whose header carries a JSON document under the key
  ``napari_fast_style``: architecture and its arguments, kind (``style`` / ``sr``), display name,
  styles, value range, training recipe, package version. Loading never executes code.
* Bundled models live in ``src_models/weights/``; user models in the platform's user data dir, or in
  ``$NAPARI_FAST_STYLE_MODELS`` when set.
* pytorch/examples ``fast_neural_style`` checkpoints (``.pth`` / ``.model`` state dicts) are imported
  with ``torch.load(weights_only=True)``; stale InstanceNorm running statistics are dropped.
* The VGG16 loss network loads from a user path, torchvision's ImageNet state dict (full model or
  ``features`` only), the Oxford/Caffe conversion, or - on explicit request only - torchvision's
  official URL through ``torch.hub.load_state_dict_from_url``.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from src_models import CONFIGS, WEIGHTS_DIR, TransformerNet, VGGFeatures

log = logging.getLogger(__name__)

META_KEY = "napari_fast_style"
FORMAT_VERSION = 1
KINDS = ("style", "sr")
ENV_USER_DIR = "NAPARI_FAST_STYLE_MODELS"
DEFAULT_STYLE = "starry_night-fast"  # the bundled style chosen when none is named (the longest-trained one)
TORCHVISION_VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")  # valid model names

PathLike = Union[str, os.PathLike]


class ModelError(ValueError):
    """A model file is missing, unreadable, or not a model this package understands."""


@dataclass(frozen=True)
class ModelEntry:
    """One model known to the store."""

    name: str
    kind: str
    arch: str
    path: Path
    display_name: str
    styles: tuple[str, ...] = ()
    source: str = "user"  # "bundled" or "user"
    metadata: dict = field(default_factory=dict, compare=False, repr=False)


def user_model_dir() -> Path:
    """Where user models are saved: ``$NAPARI_FAST_STYLE_MODELS`` or the platform's user data dir."""
    env = os.environ.get(ENV_USER_DIR)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("napari-fast-style", appauthor=False)) / "models"


def bundled_model_dir() -> Path:
    return WEIGHTS_DIR


def read_metadata(path: PathLike) -> dict:
    """The JSON metadata of one of our safetensors files (header only; tensors are not read)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if n <= 0 or n > 100_000_000:
                raise ValueError("bad header length")
            header = json.loads(f.read(n))
        raw = (header.get("__metadata__") or {}).get(META_KEY)
        if raw is None:
            raise ModelError(f"{path.name}: a safetensors file, but not a napari-fast-style model (no metadata)")
        meta = json.loads(raw)
    except ModelError:
        raise
    except Exception as e:  # noqa: BLE001 - any parse failure means "not a model"
        raise ModelError(f"{path.name}: not a napari-fast-style model file ({e.__class__.__name__}: {e})") from None
    for key in ("arch", "kind", "arch_args"):
        if key not in meta:
            raise ModelError(f"{path.name}: model metadata lacks {key!r}")
    if meta["kind"] not in KINDS:
        raise ModelError(f"{path.name}: unknown model kind {meta['kind']!r}")
    return meta


def _entry(path: Path, source: str) -> ModelEntry:
    meta = read_metadata(path)
    return ModelEntry(
        name=path.stem, kind=meta["kind"], arch=meta["arch"], path=path,
        display_name=meta.get("display_name", path.stem), styles=tuple(meta.get("styles", ())),
        source=source, metadata=meta,
    )


def list_models(kind: Optional[str] = None) -> list[ModelEntry]:
    """Bundled models, then user models; names are unique (a user model that shadows a bundled
    name is listed as ``NAME-user``). Unreadable files in the user dir are skipped with a warning."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {KINDS}")
    entries: list[ModelEntry] = []
    seen: set[str] = set()
    for source, folder in (("bundled", bundled_model_dir()), ("user", user_model_dir())):
        if not folder.is_dir():
            continue
        for p in sorted(folder.glob("*.safetensors")):
            try:
                e = _entry(p, source)
            except ModelError as err:
                log.warning("skipping %s: %s", p, err)
                continue
            if e.name in seen:
                e = ModelEntry(**{**e.__dict__, "name": f"{e.name}-user"})
            seen.add(e.name)
            if kind is None or e.kind == kind:
                entries.append(e)
    return entries


def find_model(model: Union[str, PathLike, ModelEntry], kind: Optional[str] = None) -> ModelEntry:
    """Resolve a model name from :func:`list_models` or a path to a ``.safetensors`` file."""
    if isinstance(model, ModelEntry):
        return model
    p = Path(model)
    if p.suffix == ".safetensors" or p.is_file():
        if p.suffix != ".safetensors":
            raise ModelError(f"{p.name}: not a .safetensors model (import pytorch checkpoints with "
                             "`napari-fast-style models import`)")
        e = _entry(p.expanduser(), "path")
    else:
        known = list_models()
        matches = [e for e in known if e.name == str(model)]
        if not matches:  # name the models that would have fitted (style models for stylize, SR for upscaling)
            names = ", ".join(e.name for e in known if kind is None or e.kind == kind) or "none"
            raise ModelError(f"unknown {kind + ' ' if kind else ''}model {str(model)!r}; available: {names}")
        e = matches[0]
    if kind is not None and e.kind != kind:
        raise ModelError(f"{e.name} is a {e.kind!r} model, not a {kind!r} model")
    return e


def build_network(meta: dict) -> torch.nn.Module:
    """Instantiate the network a metadata document describes (no weights)."""
    if meta["kind"] == "style":
        if meta["arch"] not in CONFIGS and meta["arch"] != "custom":
            raise ModelError(f"unknown style architecture {meta['arch']!r}")
        args = dict(meta["arch_args"])
        for k in ("channels", "kernels", "strides"):
            if k in args:
                args[k] = tuple(args[k])
        return TransformerNet(**args)
    if meta["kind"] == "sr":
        if meta["arch"] != "srnet":
            raise ModelError(f"unknown super-resolution architecture {meta['arch']!r}")
        from src_models.sr_net import SRNet

        args = dict(meta["arch_args"])
        if args.get("up_channels") is not None:
            args["up_channels"] = tuple(args["up_channels"])
        try:
            return SRNet(**args)
        except (TypeError, ValueError) as err:
            raise ModelError(f"bad super-resolution network arguments: {err}") from None
    raise ModelError(f"no network for model kind {meta['kind']!r}")


def load_model(model: Union[str, PathLike, ModelEntry], kind: Optional[str] = None,
               device: Union[str, torch.device] = "cpu") -> tuple[torch.nn.Module, ModelEntry]:
    """Load a model (name or path) into a network in eval mode, strictly and without executing code."""
    e = find_model(model, kind)
    net = build_network(e.metadata)
    try:
        state = load_file(str(e.path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelError(f"{e.path.name}: cannot read weights ({err})") from None
    try:
        net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except RuntimeError as err:
        raise ModelError(f"{e.path.name}: weights do not match the {e.arch!r} architecture: "
                         f"{str(err).splitlines()[0]}") from None
    return net.to(device).eval().requires_grad_(False), e


def _atomic_save(tensors: dict, path: Path, metadata: dict) -> None:
    from .progress import atomic_write

    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def save_model(net: torch.nn.Module, path: PathLike, *, kind: str, arch: str, display_name: str,
               styles: tuple[str, ...] = (), recipe: Optional[dict] = None, half: bool = True,
               extra: Optional[dict] = None) -> Path:
    """Write a network as safetensors with our metadata header (atomically: temp file + rename)."""
    from .. import __version__

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ModelError(f"model files end in .safetensors, got {path.name}")
    arch_args = dict(getattr(net, "config", {}))
    meta = {
        "format_version": FORMAT_VERSION, "kind": kind, "arch": arch, "arch_args": arch_args,
        "display_name": display_name, "styles": list(styles), "value_range": 255.0,
        "recipe": recipe or {}, "package_version": __version__, **(extra or {}),
    }
    dtype = torch.float16 if half else torch.float32
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in net.state_dict().items()}
    _atomic_save(tensors, path, {META_KEY: json.dumps(meta)})
    return path


# ----------------------------------------------------------------------------- pytorch/examples import
_PTEX_RUNNING = re.compile(r"\.running_(mean|var)$|\.num_batches_tracked$")


def _infer_transformer_args(state: dict) -> dict:
    """Architecture arguments from a pytorch/examples-layout state dict (classic or ours)."""
    downs = []
    i = 1
    while f"conv{i}.conv2d.weight" in state:
        downs.append(state[f"conv{i}.conv2d.weight"])
        i += 1
    n_res = 0
    while f"res{n_res + 1}.conv1.conv2d.weight" in state:
        n_res += 1
    if not downs or n_res == 0:
        raise ModelError("not a fast_neural_style TransformerNet state dict (no conv1/res1 weights)")
    channels = tuple(int(w.shape[0]) for w in downs)
    kernels = tuple(int(w.shape[-1]) for w in downs)
    n_dec = 1
    while f"deconv{n_dec + 1}.conv2d.weight" in state:
        n_dec += 1
    final = state[f"deconv{n_dec}.conv2d.weight"]
    n_styles = 1 if state["in1.weight"].dim() == 1 else int(state["in1.weight"].shape[0])
    # a stride-2 first layer implies the pixel-shuffle head (3 * 2 * 2 output channels)
    first_stride = 2 if int(final.shape[0]) == 12 else 1
    strides = (first_stride,) + (2,) * (n_dec - 1) + (1,) * (len(channels) - n_dec)
    return dict(channels=channels, kernels=kernels, strides=strides, n_res=n_res,
                final_kernel=int(final.shape[-1]), n_styles=n_styles, out_scale=1.0)


def import_checkpoint(path: PathLike, name: Optional[str] = None, *, display_name: Optional[str] = None,
                      dest_dir: Optional[PathLike] = None) -> ModelEntry:
    """Import a pytorch/examples fast_neural_style checkpoint (or one of our safetensors files) into
    the user model dir. Returns the new entry. Nothing in the file is executed."""
    src = Path(path).expanduser()
    if not src.is_file():
        raise ModelError(f"file not found: {src}")
    name = name or re.sub(r"[^A-Za-z0-9_.\-]+", "_", src.stem)
    if not NAME_RE.match(name):
        raise ModelError(f"invalid model name {name!r} (letters, digits, '_', '-', '.')")
    if name in {e.name for e in list_models()}:
        raise ModelError(f"a model named {name!r} exists already; choose another name")
    dest = Path(dest_dir) if dest_dir else user_model_dir()
    if src.suffix == ".safetensors":
        net, entry = load_model(src)
        meta = entry.metadata
        return _entry(save_model(net, dest / f"{name}.safetensors", kind=meta["kind"], arch=meta["arch"],
                                 display_name=display_name or meta.get("display_name", name),
                                 styles=tuple(meta.get("styles", ())), recipe=meta.get("recipe"),
                                 half=False), "user")
    try:
        state = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - pickle/zip errors of every kind
        raise ModelError(f"{src.name}: not a loadable PyTorch state dict ({err.__class__.__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{src.name}: not a state dict of tensors")
    state = {k.removeprefix("module."): v for k, v in state.items() if not _PTEX_RUNNING.search(k)}
    args = _infer_transformer_args(state)
    net = TransformerNet(**args)
    try:
        net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except RuntimeError as err:
        raise ModelError(f"{src.name}: state dict does not fit a TransformerNet: {str(err).splitlines()[0]}") from None
    arch = next((a for a, c in CONFIGS.items()
                 if all(args[k] == v for k, v in c.items() if k != "out_scale")), "custom")
    out = save_model(net, dest / f"{name}.safetensors", kind="style", arch=arch,
                     display_name=display_name or name.replace("_", " "), styles=(name,),
                     recipe={"imported_from": src.name}, half=False)
    return _entry(out, "user")


# ----------------------------------------------------------------------------- loss networks
def _read_state(weights, label: str, url: str, download: bool) -> dict:
    """A state dict from a path, a loaded dict, or ``"torchvision"`` (downloaded only on request)."""
    if isinstance(weights, str) and weights == "torchvision":
        if not download:
            raise ModelError(f"torchvision's {label} weights must be downloaded: pass download=True "
                             "(or a path to a local copy)")
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False)
    if isinstance(weights, dict):
        return weights
    p = Path(weights).expanduser()
    if not p.is_file():
        raise ModelError(f"{label} weights not found: {p}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise ModelError(f"{p.name}: not a loadable {label} state dict ({err.__class__.__name__})") from None
    if not isinstance(state, dict):
        raise ModelError(f"{label} weights: expected a state dict")
    return state
def load_vgg(weights: Union[str, PathLike, dict], taps=("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
             convention: Optional[str] = None, *, download: bool = False) -> VGGFeatures:
    """Fixed VGG16 feature extractor with real weights.

    ``weights``: a path to a state dict (Oxford/Caffe conversion with its metadata, torchvision's full
    ``vgg16`` ImageNet file or its ``features`` part), an already loaded state dict, or the string
    ``"torchvision"``, which downloads torchvision's official file only when ``download=True``.
    ``convention`` (``caffe``/``torchvision``) is read from the file when it says, otherwise it is
    ``torchvision`` for torchvision files and must be given for anything else.
    """
    state = _read_state(weights, "VGG16", TORCHVISION_VGG16_URL, download)
    if isinstance(weights, str) and weights == "torchvision":
        convention = convention or "torchvision"
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        info = state.get("input") or {}
        if convention is None and isinstance(info, dict):
            convention = "caffe" if info.get("channel_order") == "BGR" else None
        state = state["state_dict"]
    if any(k.startswith("features.") for k in state):
        convention = convention or "torchvision"
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    if convention is None:
        raise ModelError("cannot tell the VGG weights' input convention: pass convention='caffe' or 'torchvision'")
    net = VGGFeatures(taps, convention=convention)
    n = len(net.features)
    sub = {k: v for k, v in state.items() if k.split(".")[0].isdigit() and int(k.split(".")[0]) < n}
    try:
        net.features.load_state_dict(sub, strict=True)
    except RuntimeError as err:
        raise ModelError(f"VGG weights do not fit VGG16: {str(err).splitlines()[0]}") from None
    return net.eval().requires_grad_(False)


def load_loss_network(name: str = "vgg16", weights: Union[str, PathLike, dict, None] = None, taps=None,
                      convention: Optional[str] = None, *, download: bool = False) -> torch.nn.Module:
    """Any registered loss network (``vgg16``, ``vgg19``, ``alexnet``, ``googlenet``, ``resnet50``) with
    real weights: a file or state dict in torchvision's layout (classifier keys are dropped), or
    ``"torchvision"`` with ``download=True`` for torchvision's official ImageNet file. VGG16 also takes
    the Oxford/Caffe conversion (see :func:`load_vgg`)."""
    from src_models.loss_networks import get_loss_network_spec, strip_prefixes

    try:
        spec = get_loss_network_spec(name)
    except ValueError as e:
        raise ModelError(str(e)) from None
    taps = tuple(taps) if taps else spec.default_taps
    if name == "vgg16":
        if weights is None:
            weights = default_vgg_path()
            if weights is None:
                raise ModelError("no VGG16 weights: pass a weights file or set NAPARI_FAST_STYLE_VGG")
        return load_vgg(weights, taps, convention, download=download)
    if weights is None:
        raise ModelError(f"{name}: pass a weights file (torchvision layout) or 'torchvision' with download=True")
    state = _read_state(weights, name, spec.torchvision_url, download)
    net = spec.builder(taps, convention or "torchvision")
    state = strip_prefixes(state, spec.ignore_prefixes)
    own = set(net.state_dict())
    try:
        net.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)
    except RuntimeError as err:
        raise ModelError(f"{name} weights do not fit: {str(err).splitlines()[0]}") from None
    return net.eval().requires_grad_(False)


def default_vgg_path() -> Optional[Path]:
    """``$NAPARI_FAST_STYLE_VGG`` if set, else the user dir's ``vgg16.pth`` if it exists."""
    env = os.environ.get("NAPARI_FAST_STYLE_VGG")
    if env:
        return Path(env).expanduser()
    p = user_model_dir().parent / "vgg16.pth"
    return p if p.is_file() else None
