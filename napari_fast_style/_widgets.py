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
from magicgui.widgets import (CheckBox, ComboBox, Container, FloatSlider, Label, LineEdit, PushButton,
                              RadioButtons, create_widget)
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info, show_warning

log = logging.getLogger(__name__)

WHOLE, CURRENT = "whole stack", "current plane"


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


def _layer_geometry(layer, plane_only: bool) -> dict:
    nd = 2 if plane_only else None
    scale = list(layer.scale)[-nd:] if nd else list(layer.scale)
    translate = list(layer.translate)[-nd:] if nd else list(layer.translate)
    return {"scale": scale, "translate": translate}


class StylizeWidget(Container):
    """Stylize the selected image layer with a trained style network; the result is a new layer."""

    def __init__(self, napari_viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.layer_combo = create_widget(label="image", annotation="napari.layers.Image")
        self.model_combo = ComboBox(label="style", choices=self._model_choices)
        self.strength = FloatSlider(label="strength", min=0.0, max=1.0, step=0.05, value=1.0)
        self.preserve = CheckBox(text="preserve original colours", value=False)
        self.blend = LineEdit(label="style blend", value="")
        self.blend.tooltip = "multi-style models: NAME:WEIGHT, NAME:WEIGHT"
        self.scope = RadioButtons(label="planes", choices=[WHOLE, CURRENT], value=WHOLE)
        self.share = CheckBox(text="same statistics for all planes (less flicker)", value=False)
        self.device = ComboBox(label="device", choices=available_devices(), value="auto")
        self.apply_btn = PushButton(text="Apply")
        self.stop_btn = PushButton(text="Stop")
        self.status = Label(value="")
        self.extend([self.layer_combo, self.model_combo, self.strength, self.preserve, self.blend, self.scope,
                     self.share, self.device, self.apply_btn, self.stop_btn, self.status])
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
        self._refresh_timer = QTimer()
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(300)
        self._refresh_timer.timeout.connect(self.refresh_models)
        self._watcher = QFileSystemWatcher([str(d)])
        self._watcher.directoryChanged.connect(lambda *_: self._refresh_timer.start())

    def _entry(self):
        from .engine import find_model

        return find_model(self.model_combo.value, kind="style") if self.model_combo.value else None

    def _update_visibility(self, *_):
        layer = self.layer_combo.value
        nd = layer is not None and (layer.ndim > 2)
        self.scope.visible = bool(nd)
        self.share.visible = bool(nd)
        try:
            e = self._entry()
        except Exception:  # noqa: BLE001 - a vanished file is reported on Apply
            e = None
        self.blend.visible = bool(e is not None and len(e.styles) > 1)

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
        if not self.model_combo.value:
            show_error("napari-fast-style: no style model available")
            return None
        stack = (layer.ndim > 2)
        try:
            entry = self._entry()
            weights = None
            if len(entry.styles) > 1 and self.blend.value.strip():
                weights = {k.strip(): float(v) for k, v in (s.split(":") for s in self.blend.value.split(","))}
            cfg = StylizeConfig(strength=float(self.strength.value), preserve_color=bool(self.preserve.value),
                                share_stats=bool(self.share.value and stack), device=self.device.value)
            device = resolve_device(cfg.device)
            net = self._net(entry, device)
        except Exception as e:  # noqa: BLE001 - every user error becomes a notification
            show_error(f"napari-fast-style: {e}")
            return None
        data = layer.data[0] if layer.multiscale else layer.data
        rgb = bool(layer.rgb)
        limits = tuple(float(v) for v in layer.contrast_limits)
        plane = None
        leading = data.ndim - (3 if rgb else 2)
        if leading > 0 and self.scope.value == CURRENT:
            plane = tuple(int(i) for i in self.viewer.dims.current_step[:leading])
            data = np.array(data[plane])  # copy of the one plane the run needs
            plane_only = True
            plane_idx = plane
            plane = None
        else:
            plane_only = False
            plane_idx = None
            data = np.asarray(data) if isinstance(data, np.ndarray) else data
        geometry = _layer_geometry(layer, plane_only)
        name = f"{layer.name} [{entry.display_name}]" + (f" plane {plane_idx}" if plane_idx is not None else "")

        def gen(token):
            return stylize_iter(data, entry, cfg, rgb=rgb, contrast_limits=limits, plane=plane, net=net,
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

    def reset_choices(self, *args):
        super().reset_choices(*args)
        self._update_visibility()
