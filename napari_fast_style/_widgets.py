"""Dock widgets (the only module importing napari, qtpy and magicgui).

Widgets are thin: they read their inputs, copy what the run needs out of the layer in the main
thread, build an engine config, and hand the engine generator to :class:`Runner`, which runs it in a
napari thread worker with a progress bar in the activity dock and a Stop button. Layers are added
only in the ``returned`` slot; errors become napari notifications; the input layer is never modified.
"""
from __future__ import annotations

import logging
from typing import Callable, Optional

import numpy as np
from magicgui.widgets import (CheckBox, ComboBox, Container, FileEdit, FloatSlider, Label, LineEdit, PushButton,
                              RadioButtons, Select, SpinBox, create_widget)
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info, show_warning

log = logging.getLogger(__name__)

WHOLE, CURRENT = "whole stack", "current plane"
TRAINED, OPTIMISE = "trained network", "optimise (any style layer)"


def available_devices() -> list[str]:
    import torch

    out = ["auto", "cpu"]
    if torch.cuda.is_available():
        out.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out.append("mps")
    return out


class _Failure:
    def __init__(self, error: Exception):
        self.error = error


class Runner:
    """Runs one engine generator at a time in a thread worker; Stop sets its cancel token.

    The engine returns what it has when cancelled, so ``returned`` fires for a stopped run too
    (napari's ``worker.quit()`` would neither close the generator nor emit ``returned``).
    """

    def __init__(self, apply_btn: PushButton, stop_btn: PushButton, status: Label):
        self.apply_btn, self.stop_btn, self.status = apply_btn, stop_btn, status
        self.worker = None
        self.token = None
        self.stop_btn.enabled = False
        self.stop_btn.changed.connect(self.stop)

    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(self, gen_factory: Callable, *, label: str, on_return: Callable, on_yield: Optional[Callable] = None):
        from .engine import CancelToken

        if self.running:
            show_warning("napari-fast-style: a run is already in progress")
            return None
        self.token = token = CancelToken()

        def work():
            try:
                return (yield from gen_factory(token))
            except Exception as e:  # noqa: BLE001 - reported as a notification in the main thread
                log.debug("run failed", exc_info=True)
                return _Failure(e)

        worker = create_worker(work, _start_thread=False)
        pbar = progress(total=0, desc=label)  # shown in the activity dock
        closed = []

        def yielded(p):
            if not closed:
                if p.total and pbar.total != p.total:
                    pbar.total = p.total
                pbar.n = p.step
                pbar.set_description(f"{label}: {p.stage}")
                pbar.refresh()
            self.status.value = f"{p.stage} {p.step}/{p.total}" + (f" - {p.message}" if p.message else "")
            if on_yield is not None:
                on_yield(p)

        def errored(e):
            self.status.value = f"error: {e}"
            show_error(f"napari-fast-style: {e}")

        def finished():
            if not closed:
                closed.append(True)
                pbar.close()
            self.apply_btn.enabled = True
            self.stop_btn.enabled = False
            self.worker = None

        def returned(result):
            if isinstance(result, _Failure):
                errored(result.error)
            else:
                on_return(result)

        worker.yielded.connect(yielded)
        worker.returned.connect(returned)
        worker.errored.connect(errored)
        worker.finished.connect(finished)
        self.apply_btn.enabled = False
        self.stop_btn.enabled = True
        self.status.value = f"{label}: starting"
        self.worker = worker
        worker.start()
        return worker

    def stop(self, *_):
        if self.token is not None:
            self.token.cancel()
            self.status.value = "stopping..."


def resampled_geometry(scale, translate, in_shape, out_shape) -> dict:
    """Scale/translate of a resampled copy so its pixel centres overlay the input in world coordinates."""
    ratio = [i / o for i, o in zip(in_shape, out_shape)]
    return {"scale": [s * r for s, r in zip(scale, ratio)],
            "translate": [t + s * (r - 1) / 2 for t, s, r in zip(translate, scale, ratio)]}


def _layer_geometry(layer, plane_only: bool) -> dict:
    nd = 2 if plane_only else None
    scale = list(layer.scale)[-nd:] if nd else list(layer.scale)
    translate = list(layer.translate)[-nd:] if nd else list(layer.translate)
    return {"scale": scale, "translate": translate}


def _screen_index(viewer, layer) -> tuple:
    """Index over the layer's leading (non-spatial) axes of the plane on screen; () for a 2D layer."""
    data = layer.data[0] if layer.multiscale else layer.data
    leading = data.ndim - (3 if layer.rgb else 2)
    return tuple(int(i) for i in viewer.dims.current_step[:leading]) if leading > 0 else ()


def _run_input(viewer, layer, current_plane: bool):
    """The data a run needs (the one plane on screen copied, or the layer's array), that plane's index
    (None for the whole layer), and the layer's world geometry for those axes."""
    data = layer.data[0] if layer.multiscale else layer.data
    idx = _screen_index(viewer, layer)
    if idx and current_plane:
        return np.array(data[idx]), idx, _layer_geometry(layer, True)
    return data, None, _layer_geometry(layer, False)


def _screen_plane(viewer, layer) -> np.ndarray:
    """A copy of the plane of ``layer`` on screen (2D, or 2D + channels)."""
    data = layer.data[0] if layer.multiscale else layer.data
    return np.array(data[_screen_index(viewer, layer)])


def _as_unit(layer, plane: np.ndarray) -> np.ndarray:
    """A plane of ``layer`` as float RGB in [0, 1], through the layer's own contrast limits."""
    from .engine.convert import PlaneReader, describe

    lay = describe(plane, rgb=bool(layer.rgb), limits=tuple(float(v) for v in layer.contrast_limits))
    return PlaneReader(plane, lay).unit(plane)


class StylizeWidget(Container):
    """Stylize the selected image layer with a trained style network; the result is a new layer."""

    def __init__(self, napari_viewer):
        from .engine.optimize import OptimizeConfig

        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.method = ComboBox(label="method", choices=[TRAINED, OPTIMISE], value=TRAINED)
        self.layer_combo = create_widget(label="image", annotation="napari.layers.Image")
        self.style_layers = Select(label="style layers", choices=self._image_layer_names)
        self.style_layers.tooltip = "one or more image layers used as style (ctrl/cmd-click for several)"
        self.style_blend = LineEdit(label="style weights", value="")
        self.style_blend.tooltip = "one weight per selected style layer, e.g. 0.7, 0.3 (empty: equal)"
        self.iterations = SpinBox(label="iterations", min=1, max=5000, value=300)
        self.size = SpinBox(label="resolution", min=32, max=8192, step=32, value=512)
        self.size.tooltip = "longer side of the result in pixels"
        self.time_limit = SpinBox(label="time limit (s)", min=0, max=86400, value=0)
        self.time_limit.tooltip = "the run takes at most this many seconds and keeps the best result so far (0: no limit)"
        self.balance = FloatSlider(label="style <-> content", min=0.0, max=4.0, step=0.05,
                                   value=round(float(np.log10(OptimizeConfig.style_weight)), 2))
        self.balance.tooltip = "style weight = 10 ** value (content weight 1)"
        self.vgg_file = FileEdit(label="VGG16 weights", mode="r", filter="*.pth *.pt")
        self.model_combo = ComboBox(label="style", choices=self._model_choices)
        from .engine.models import DEFAULT_STYLE

        if DEFAULT_STYLE in self.model_combo.choices:
            self.model_combo.value = DEFAULT_STYLE
        self.strength = FloatSlider(label="strength", min=0.0, max=1.0, step=0.05, value=1.0)
        self.preserve = CheckBox(text="preserve original colours", value=False)
        # multi-style models: one slider per style (rebuilt when such a model is chosen); weights are normalised
        self.blend = Container(label="style blend", widgets=[])
        self.blend.tooltip = "the share of each style (weights are normalised to sum to 1)"
        self._blend_styles: tuple = ()
        self.scope = RadioButtons(label="planes", choices=[WHOLE, CURRENT], value=WHOLE)
        self.share = CheckBox(text="same statistics for all planes (less flicker)", value=False)
        self.device = ComboBox(label="device", choices=available_devices(), value="auto")
        self.apply_btn = PushButton(text="Apply")
        self.stop_btn = PushButton(text="Stop")
        self.status = Label(value="")
        self.extend([self.method, self.layer_combo, self.model_combo, self.strength, self.blend, self.style_layers,
                     self.style_blend, self.iterations, self.time_limit, self.size, self.balance, self.vgg_file,
                     self.preserve, self.scope, self.share, self.device, self.apply_btn, self.stop_btn, self.status])
        from .engine.models import default_vgg_path

        vgg = default_vgg_path()
        if vgg is not None:
            self.vgg_file.value = vgg
        self.method.changed.connect(self._update_visibility)
        self.runner = Runner(self.apply_btn, self.stop_btn, self.status)
        self.apply_btn.changed.connect(self.apply)
        self.model_combo.changed.connect(self._update_visibility)
        self.layer_combo.changed.connect(self._update_visibility)
        self._nets: dict = {}  # small cache of loaded networks, owned by this widget
        self._watch_user_dir()
        self._update_visibility()

    # -------------------------------------------------------------- models
    def _model_choices(self, *_):
        from .engine import list_models

        entries = list_models("style")
        labels = [f"{e.display_name} ({e.arch})" for e in entries]
        # labels must be unique for the combo box: disambiguate with the model's unique name
        return [(lab if labels.count(lab) == 1 else f"{lab} [{e.name}]", e.name) for lab, e in zip(labels, entries)]

    def refresh_models(self):
        self.model_combo.reset_choices()

    def _watch_user_dir(self):
        from qtpy.QtCore import QFileSystemWatcher

        from .engine import user_model_dir

        d = user_model_dir()
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:
            return
        from qtpy.QtCore import QTimer

        # debounce: a file being copied in appears before its contents are written
        # both are children of this widget's Qt widget, so they end with it (no refresh after closing)
        self._refresh_timer = QTimer(self.native)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(300)
        self._refresh_timer.timeout.connect(self.refresh_models)
        self._watcher = QFileSystemWatcher([str(d)], self.native)
        self._watcher.directoryChanged.connect(lambda *_: self._refresh_timer.start())

    def _entry(self):
        from .engine import find_model

        return find_model(self.model_combo.value, kind="style") if self.model_combo.value else None

    def _image_layer_names(self, *_):
        import napari

        return [ly.name for ly in self.viewer.layers if isinstance(ly, napari.layers.Image)]

    def _update_visibility(self, *_):
        layer = self.layer_combo.value
        opt = self.method.value == OPTIMISE
        nd = layer is not None and (layer.ndim > 2)
        self.scope.visible = bool(nd) and not opt
        self.share.visible = bool(nd) and not opt
        for wdg in (self.style_layers, self.style_blend, self.iterations, self.time_limit, self.size, self.balance,
                    self.vgg_file):
            wdg.visible = opt
        for wdg in (self.model_combo, self.strength):
            wdg.visible = not opt
        try:
            e = self._entry()
        except Exception:  # noqa: BLE001 - a vanished file is reported on Apply
            e = None
        multi = e is not None and len(e.styles) > 1
        if multi and tuple(e.styles) != self._blend_styles:
            del self.blend[:]
            for k, style in enumerate(e.styles):  # start with the first style alone; blend from there
                self.blend.append(FloatSlider(name=style, label=style.replace("_", " "), min=0.0, max=1.0, step=0.05,
                                              value=1.0 if k == 0 else 0.0))
            self._blend_styles = tuple(e.styles)
        self.blend.visible = multi and not opt

    def blend_weights(self) -> Optional[dict]:
        """The style blend of the chosen multi-style model (None for a single-style model)."""
        if len(self._blend_styles) < 2:
            return None
        weights = {w.name: float(w.value) for w in self.blend}
        if sum(weights.values()) <= 0:
            raise ValueError("style blend: set at least one style above 0")
        return weights

    def _net(self, entry, device):
        from .engine import load_model

        key = (str(entry.path), str(device))
        if key not in self._nets:
            self._nets.clear()  # keep at most one network alive
            self._nets[key] = load_model(entry, device=device)[0]
        return self._nets[key]

    # -------------------------------------------------------------- run
    def apply(self, *_):
        from .engine import StylizeConfig, resolve_device, stylize_iter

        layer = self.layer_combo.value
        if layer is None:
            show_error("napari-fast-style: select an image layer first")
            return None
        if self.method.value == OPTIMISE:
            return self._apply_optimise(layer)
        if not self.model_combo.value:
            show_error("napari-fast-style: no style model available")
            return None
        stack = (layer.ndim > 2)
        try:
            entry = self._entry()
            weights = self.blend_weights() if len(entry.styles) > 1 else None
            cfg = StylizeConfig(strength=float(self.strength.value), preserve_color=bool(self.preserve.value),
                                share_stats=bool(self.share.value and stack), device=self.device.value)
            device = resolve_device(cfg.device)
            net = self._net(entry, device)
        except Exception as e:  # noqa: BLE001 - every user error becomes a notification
            show_error(f"napari-fast-style: {e}")
            return None
        data, plane_idx, geometry = _run_input(self.viewer, layer, self.scope.value == CURRENT)
        rgb = bool(layer.rgb)
        limits = tuple(float(v) for v in layer.contrast_limits)
        name = f"{layer.name} [{entry.display_name}]" + (f" plane {plane_idx}" if plane_idx is not None else "")

        def gen(token):
            return stylize_iter(data, entry, cfg, rgb=rgb, contrast_limits=limits, net=net,
                                style_weights=weights, cancel=token)

        def done(result):
            if result.planes_done == 0:
                show_info("napari-fast-style: stopped before any plane was finished; nothing added")
                return
            meta = dict(result.metadata)
            meta["napari_fast_style"] = {**meta["napari_fast_style"], "source_layer": layer.name,
                                         "source_plane": list(plane_idx) if plane_idx is not None else None}
            suffix = " (partial)" if result.cancelled else ""
            self.viewer.add_image(result.data, name=name + suffix, rgb=True, metadata=meta, **geometry)
            self.status.value = (f"stopped after {result.planes_done}/{result.planes_total} planes" if result.cancelled
                                 else f"done in {result.seconds:.1f} s")

        return self.runner.start(gen, label=f"Stylize {layer.name}", on_return=done)

    def _apply_optimise(self, layer):
        from .engine import OptimizeConfig, optimize_iter

        names = list(self.style_layers.value or [])
        if not names:
            show_error("napari-fast-style: select one or more style layers")
            return None
        try:
            if self.style_blend.value.strip():
                weights = [float(v) for v in self.style_blend.value.split(",")]
                if len(weights) != len(names):
                    raise ValueError(f"{len(names)} style layers selected but {len(weights)} weights given")
            else:
                weights = [1.0] * len(names)
            cfg = OptimizeConfig(iterations=int(self.iterations.value), size=int(self.size.value),
                                 style_weight=float(10 ** self.balance.value),
                                 preserve_color=bool(self.preserve.value), device=self.device.value,
                                 time_limit=float(self.time_limit.value) or None,
                                 preview_every=max(1, min(5, int(self.iterations.value) // 20)))
            vgg_path = self.vgg_file.value
            if not vgg_path or not str(vgg_path).strip() or not vgg_path.is_file():
                raise ValueError("choose the VGG16 weights file (or set NAPARI_FAST_STYLE_VGG)")
            style_l, content_l = cfg.layers()
            net = self._vgg_cache(str(vgg_path), tuple(dict.fromkeys((*style_l, content_l))))
        except Exception as e:  # noqa: BLE001
            show_error(f"napari-fast-style: {e}")
            return None

        content = _screen_plane(self.viewer, layer)
        rgb, limits = bool(layer.rgb), tuple(float(v) for v in layer.contrast_limits)
        styles = []
        for n, w in zip(names, weights):  # style layers through their own contrast limits
            style_layer = self.viewer.layers[n]
            styles.append((_as_unit(style_layer, _screen_plane(self.viewer, style_layer)), w))
        in_hw = content.shape[:2]
        base = _layer_geometry(layer, True)
        name = f"{layer.name} [optimised: {', '.join(names)}]"
        live = {}

        def show(data):
            geom = resampled_geometry(base["scale"], base["translate"], in_hw, data.shape[:2])
            if "layer" in live and live["layer"] in self.viewer.layers:
                live["layer"].data = data
                live["layer"].scale, live["layer"].translate = geom["scale"], geom["translate"]
            else:
                live["layer"] = self.viewer.add_image(data, name=name, rgb=True, **geom)

        def on_yield(p):
            if p.preview is not None:
                show(np.clip(p.preview, 0, 1).astype(np.float32))

        def done(result):
            show(result.data)
            live["layer"].metadata = {**result.metadata, "source_layer": layer.name, "style_layers": names}
            self.status.value = ("stopped: kept the best image so far" if result.cancelled
                                 else f"done in {result.seconds:.1f} s")

        def gen(token):
            return optimize_iter(content, styles, cfg, network=net, rgb=rgb, contrast_limits=limits, cancel=token)

        return self.runner.start(gen, label=f"Optimise {layer.name}", on_return=done, on_yield=on_yield)

    def _vgg_cache(self, path, taps):
        from .engine import load_vgg

        key = ("vgg", path, taps)
        if key not in self._nets:
            self._nets.clear()
            self._nets[key] = load_vgg(path, taps)
        return self._nets[key]

    def reset_choices(self, *args):
        super().reset_choices(*args)
        self._update_visibility()


class LossPlot:
    """A small loss curve (log scale) drawn with QPainter; a magicgui-compatible wrapper widget."""

    def __init__(self):
        from magicgui.widgets import Container as _C
        from qtpy.QtWidgets import QLabel

        self.points: dict[str, list] = {}
        self.label = QLabel()
        self.label.setMinimumHeight(120)
        self.widget = _C(labels=False)
        self.widget.native.layout().addWidget(self.label)

    def add(self, step: int, losses: dict):
        for k in ("total", "style", "content"):
            if k in losses and losses[k] > 0:
                self.points.setdefault(k, []).append((step, float(losses[k])))
        if step % 5 == 0:
            self.redraw()

    def redraw(self):
        from qtpy.QtCore import QPointF
        from qtpy.QtGui import QColor, QPainter, QPen, QPixmap

        w, h = max(200, self.label.width()), 120
        pm = QPixmap(w, h)
        pm.fill(QColor(38, 41, 48))
        vals = [v for pts in self.points.values() for _, v in pts]
        if vals:
            lo, hi = np.log10(min(vals)), np.log10(max(vals))
            hi = hi if hi > lo else lo + 1
            n = max(max(s for s, _ in pts) for pts in self.points.values())
            p = QPainter(pm)
            for k, color in (("total", "#ffffff"), ("style", "#f0a030"), ("content", "#40a0f0")):
                pts = self.points.get(k, [])
                p.setPen(QPen(QColor(color), 1.5))
                poly = [QPointF(4 + (w - 8) * s / max(n, 1), h - 14 - (h - 24) * (np.log10(v) - lo) / (hi - lo))
                        for s, v in pts[-2000:]]
                for a, b in zip(poly, poly[1:]):
                    p.drawLine(a, b)
            p.setPen(QColor("#cccccc"))
            p.drawText(4, h - 2, "total (white), style (orange), content (blue), log scale")
            p.end()
        self.label.setPixmap(pm)


class TrainStyleWidget(Container):
    """Train a new style network from an image layer, inside napari, with a live preview and a loss curve."""

    def __init__(self, napari_viewer):
        super().__init__(labels=True)
        from .engine.models import default_vgg_path

        self.viewer = napari_viewer
        self.style_layer = create_widget(label="style layer", annotation="napari.layers.Image")
        self.region = ComboBox(label="region (shapes)", choices=self._shapes_choices)
        self.region.tooltip = "optional: the first rectangle of this Shapes layer is the part of the style to learn"
        self.content_source = RadioButtons(label="content", choices=["viewer layers + samples", "folder"],
                                           value="viewer layers + samples")
        self.folder = FileEdit(label="content folder", mode="d")
        self.start_from = ComboBox(label="start from", choices=self._start_choices)
        self.start_from.tooltip = ("fine-tune an installed style model (much faster to a usable style, "
                                   "measured on a CPU) or train from scratch")
        from .engine.models import DEFAULT_STYLE

        if DEFAULT_STYLE in self.start_from.choices:
            self.start_from.value = DEFAULT_STYLE
        self.arch = ComboBox(label="architecture", choices=["fast", "classic"], value="fast")
        self.train_size = SpinBox(label="training size", min=32, max=1024, step=32, value=256)
        self.style_size = SpinBox(label="style scale (px)", min=32, max=4096, step=32, value=512)
        self.style_size.tooltip = "shorter side the style image is resized to: smaller gives larger brush strokes"
        self.budget_kind = RadioButtons(label="budget", choices=["steps", "minutes"], value="minutes")
        self.budget = SpinBox(label="amount", min=1, max=100000, value=10)
        self.budget.tooltip = ("steps or minutes of training; the learning rate falls to zero over this budget, "
                               "so the model saved at the end has settled (Stop saves it as it is)")
        self.balance = FloatSlider(label="style <-> content", min=0.0, max=2.0, step=0.1, value=0.7)
        self.balance.tooltip = "style weight = 10 ** value (content weight 1)"
        self.model_name = LineEdit(label="model name", value="my-style")
        self.vgg_file = FileEdit(label="VGG16 weights", mode="r", filter="*.pth *.pt")
        vgg = default_vgg_path()
        if vgg is not None:
            self.vgg_file.value = vgg
        self.device = ComboBox(label="device", choices=available_devices(), value="auto")
        self.apply_btn = PushButton(text="Train")
        self.stop_btn = PushButton(text="Stop")
        self.status = Label(value="")
        self.plot = LossPlot()
        self.extend([self.style_layer, self.region, self.content_source, self.folder, self.start_from, self.arch,
                     self.train_size, self.style_size, self.budget_kind, self.budget, self.balance, self.model_name,
                     self.vgg_file, self.device,
                     self.apply_btn, self.stop_btn, self.status, self.plot.widget])
        self.runner = Runner(self.apply_btn, self.stop_btn, self.status)
        self.apply_btn.changed.connect(self.train)
        self.content_source.changed.connect(self._update_visibility)
        self.start_from.changed.connect(self._update_visibility)
        self.last_result = None
        self._update_visibility()

    def _start_choices(self, *_):
        from .engine import list_models

        return [("scratch", None)] + [(f"{e.display_name} ({e.arch}) [{e.name}]", e.name)
                                      for e in list_models("style") if len(e.styles) <= 1]

    def _shapes_choices(self, *_):
        import napari

        return [None] + [ly.name for ly in self.viewer.layers if isinstance(ly, napari.layers.Shapes)]

    def _update_visibility(self, *_):
        self.folder.visible = self.content_source.value == "folder"
        self.arch.enabled = self.start_from.value is None  # a fine-tune keeps its model's architecture

    def _style_array(self, layer) -> np.ndarray:
        d = _screen_plane(self.viewer, layer)
        if self.region.value:
            shapes = self.viewer.layers[self.region.value]
            if len(shapes.data):
                # the rectangle's corners in data coordinates of the style layer (world -> data)
                corners = np.array([layer.world_to_data(shapes.data_to_world(v)) for v in shapes.data[0]])[:, -2:]
                (y0, x0), (y1, x1) = np.floor(corners.min(0)).astype(int), np.ceil(corners.max(0)).astype(int)
                h, w = d.shape[:2]
                y0, x0, y1, x1 = max(0, y0), max(0, x0), min(h, y1), min(w, x1)
                if y1 - y0 < 32 or x1 - x0 < 32:
                    raise ValueError("the style region must be at least 32x32 pixels inside the style layer")
                d = d[y0:y1, x0:x1]
        return (_as_unit(layer, d) * 255 + 0.5).astype(np.uint8)

    def _content(self, style_layer):
        import napari

        from .engine.data import sample_images

        if self.content_source.value == "folder":
            if not self.folder.value or not str(self.folder.value).strip():
                raise ValueError("choose a content folder")
            return str(self.folder.value)
        images = []
        for ly in self.viewer.layers:
            if isinstance(ly, napari.layers.Image) and ly is not style_layer and not ly.name.startswith("training"):
                d = _screen_plane(self.viewer, ly)
                if min(d.shape[:2]) >= 32:
                    images.append((_as_unit(ly, d) * 255 + 0.5).astype(np.uint8))
        return images + sample_images()

    def train(self, *_):
        from .engine import LoopConfig, StyleTrainConfig, find_model, load_vgg, train_style_iter, user_model_dir
        from .engine.models import NAME_RE
        from .engine.training import STYLE_LR_SCHEDULE

        layer = self.style_layer.value
        if layer is None:
            show_error("napari-fast-style: select the style image layer")
            return None
        try:
            name = self.model_name.value.strip()
            if not NAME_RE.match(name):
                raise ValueError("model name: letters, digits, '_', '-', '.'")
            out = user_model_dir() / f"{name}.safetensors"
            if out.exists():
                raise ValueError(f"a model named {name!r} exists already; choose another name")
            style = self._style_array(layer)
            content = self._content(layer)
            minutes = self.budget_kind.value == "minutes"
            loop = LoopConfig(steps=None if minutes else int(self.budget.value),
                              minutes=float(self.budget.value) if minutes else None, device=self.device.value,
                              preview_every=10, checkpoint_every=50, lr_schedule=STYLE_LR_SCHEDULE)
            start = find_model(self.start_from.value, kind="style") if self.start_from.value else None
            cfg = StyleTrainConfig(arch=start.arch if start else self.arch.value,
                                   size=int(self.train_size.value) // 8 * 8, style_size=int(self.style_size.value),
                                   style_weight=float(10 ** self.balance.value), loop=loop)
            vgg_path = self.vgg_file.value
            if not vgg_path or not str(vgg_path).strip() or not vgg_path.is_file():
                raise ValueError("choose the VGG16 weights file (or set NAPARI_FAST_STYLE_VGG)")
            vgg = load_vgg(vgg_path, tuple(dict.fromkeys((*cfg.style_layers, cfg.content_layer))))
        except Exception as e:  # noqa: BLE001
            show_error(f"napari-fast-style: {e}")
            return None
        preview_src = np.array(content[0]) if isinstance(content, list) else None
        live = {}
        self.plot.points.clear()

        def on_yield(p):
            self.plot.add(p.step, p.losses)
            if p.preview is not None:
                if "layer" in live and live["layer"] in self.viewer.layers:
                    live["layer"].data = p.preview
                else:
                    live["layer"] = self.viewer.add_image(p.preview, name=f"training preview: {name}", rgb=True)

        def done(result):
            self.plot.redraw()
            self.last_result = result
            self.status.value = (f"{'stopped' if result.cancelled else 'done'} after {result.steps} steps, "
                                 f"{result.seconds:.0f} s: saved {result.path.name}")
            show_info(f"napari-fast-style: saved style model {name!r}; it is in the Stylize widget's list")

        def gen(token):
            return train_style_iter(style, out, content=content, config=cfg, vgg=vgg, name=name,
                                    preview_image=preview_src, cancel=token,
                                    init_from=start.path if start else None)

        return self.runner.start(gen, label=f"Train {name}", on_return=done, on_yield=on_yield)


SR_VARIANT_CHOICES = [("fidelity (keeps intensities)", "fidelity"),
                      ("perceptual (sharper, invents texture)", "perceptual")]


class SuperResolveWidget(Container):
    """Super-resolve the selected image layer x4 or x8; the new layer overlays the input in world coordinates.

    ``fidelity`` keeps the data's intensity scale and dtype (for measurements); ``perceptual`` looks
    sharper but invents texture that is not in the data (for viewing only).
    """

    def __init__(self, napari_viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.layer_combo = create_widget(label="image", annotation="napari.layers.Image")
        self.factor = ComboBox(label="factor", choices=[("x4", 4), ("x8", 8)], value=4)
        self.model_combo = ComboBox(label="model", choices=self._model_choices)
        self.model_combo.tooltip = ("fidelity: intensities and dtype kept, for measurements; perceptual: sharper, "
                                    "but invents texture (viewing only); or one of your SR models")
        self.scope = RadioButtons(label="planes", choices=[WHOLE, CURRENT], value=WHOLE)
        self.device = ComboBox(label="device", choices=available_devices(), value="auto")
        self.apply_btn = PushButton(text="Apply")
        self.stop_btn = PushButton(text="Stop")
        self.status = Label(value="")
        self.extend([self.layer_combo, self.factor, self.model_combo, self.scope, self.device, self.apply_btn,
                     self.stop_btn, self.status])
        self.runner = Runner(self.apply_btn, self.stop_btn, self.status)
        self.apply_btn.changed.connect(self.apply)
        self.layer_combo.changed.connect(self._update_visibility)
        self.model_combo.changed.connect(self._update_visibility)
        self._nets: dict = {}  # small cache of loaded networks, owned by this widget
        self._update_visibility()

    _net = StylizeWidget._net  # the same one-network cache

    def _model_choices(self, *_):
        from .engine import list_models

        return SR_VARIANT_CHOICES + [(f"{e.display_name} [{e.name}]", e.name) for e in list_models("sr")]

    def _update_visibility(self, *_):
        layer = self.layer_combo.value
        self.scope.visible = bool(layer is not None and layer.ndim > 2)
        name = self.model_combo.value
        if name and name not in {v for _, v in SR_VARIANT_CHOICES}:  # a model has its own factor
            try:
                from .engine import find_model

                self.factor.value = int(find_model(name, kind="sr").metadata.get("scale", self.factor.value))
            except Exception:  # noqa: BLE001 - a vanished file is reported on Apply
                pass

    def apply(self, *_):
        from .engine import SRConfig, resolve_device, resolve_sr_model, super_resolve_iter

        layer = self.layer_combo.value
        if layer is None:
            show_error("napari-fast-style: select an image layer first")
            return None
        f = int(self.factor.value)
        try:
            entry = resolve_sr_model(self.model_combo.value or "fidelity", f)
            cfg = SRConfig(device=self.device.value)
            net = self._net(entry, resolve_device(cfg.device))
        except Exception as e:  # noqa: BLE001 - every user error becomes a notification
            show_error(f"napari-fast-style: {e}")
            return None
        data, plane_idx, geometry = _run_input(self.viewer, layer, self.scope.value == CURRENT)
        rgb = bool(layer.rgb)
        limits = tuple(float(v) for v in layer.contrast_limits)
        in_dtype, colormap = np.dtype(data.dtype), layer.colormap

        def gen(token):
            return super_resolve_iter(data, entry, cfg, scale=f, rgb=rgb, contrast_limits=limits, net=net,
                                      cancel=token)

        def done(result):
            if result.planes_done == 0:
                show_info("napari-fast-style: stopped before any plane was finished; nothing added")
                return
            meta = dict(result.metadata)
            info = {**meta["napari_fast_style"], "source_layer": layer.name,
                    "source_plane": list(plane_idx) if plane_idx is not None else None}
            meta["napari_fast_style"] = info
            spatial = result.data.shape[:-1] if rgb else result.data.shape
            geom = resampled_geometry(geometry["scale"], geometry["translate"], np.shape(data)[:len(spatial)], spatial)
            extra = {} if rgb else {"colormap": colormap}
            if not rgb and result.data.dtype == in_dtype:  # same value scale (fidelity): same display
                extra["contrast_limits"] = limits
            name = (f"{layer.name} [x{f} {info['variant']}]" + (f" plane {plane_idx}" if plane_idx is not None else "")
                    + (" (partial)" if result.cancelled else ""))
            self.viewer.add_image(result.data, name=name, rgb=rgb, metadata=meta, **geom, **extra)
            self.status.value = (f"stopped after {result.planes_done}/{result.planes_total} planes" if result.cancelled
                                 else f"done in {result.seconds:.1f} s")

        return self.runner.start(gen, label=f"Super-resolve {layer.name}", on_return=done)
