"""The shared PyTorch engine (no Qt, no napari): stylize, super-resolve, train, model store.

Long operations are generators yielding :class:`Progress` and returning their result
(``*_iter``); the plain functions (:func:`stylize`, :func:`train_style`) drain them.
"""
from .convert import ImageError, ImageLayout, describe
from .data import DataError
from .device import resolve_device, resolve_precision
from .models import (ModelEntry, ModelError, find_model, import_checkpoint, list_models, load_loss_network, load_model, load_vgg,
                     read_metadata, save_model, user_model_dir)
from .optimize import OptimizeConfig, OptimizeResult, optimize, optimize_iter
from .progress import CancelToken, Progress, run_sync
from .stylize import StylizeConfig, StylizeResult, stylize, stylize_iter
from .training import LoopConfig, StyleTrainConfig, TrainResult, merge_styles, train_style, train_style_iter
from .superres import (SRConfig, SRResult, SRTrainConfig, evaluate_sr, resolve_sr_model, super_resolve,
                       super_resolve_iter, train_sr, train_sr_iter)

__all__ = [
    "CancelToken", "DataError", "OptimizeConfig", "OptimizeResult", "optimize", "optimize_iter", "ImageError", "ImageLayout", "LoopConfig", "ModelEntry", "ModelError", "Progress",
    "StyleTrainConfig", "StylizeConfig", "StylizeResult", "TrainResult", "describe", "find_model",
    "import_checkpoint", "list_models", "load_loss_network", "load_model", "load_vgg", "merge_styles", "read_metadata", "resolve_device",
    "resolve_precision", "run_sync", "save_model", "stylize", "stylize_iter", "train_style", "train_style_iter",
    "user_model_dir",
    "SRConfig", "SRResult", "SRTrainConfig", "evaluate_sr", "resolve_sr_model", "super_resolve", "super_resolve_iter",
    "train_sr", "train_sr_iter",
]
