"""Regenerate the README figures: ``python docs/make_figures.py`` (needs a display: run under xvfb-run).

* ``docs/stylize_example.jpg``: scikit-image's public-domain astronaut and coffee photos, original and
  stylized with every bundled style model.
* ``docs/widget.png``: napari with the Stylize dock widget after a run.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))


def example() -> None:
    from skimage import data

    from napari_fast_style.engine import list_models, stylize

    models = [e for e in list_models("style") if e.source == "bundled"]
    rows = []
    for img in (data.astronaut(), np.asarray(Image.fromarray(data.coffee()).resize((512, 341)))[:, 85:426]):
        img = np.asarray(Image.fromarray(img).resize((384, 384), Image.BICUBIC))
        rows.append(np.concatenate([img] + [stylize(img, e.name) for e in models], axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(DOCS / "stylize_example.jpg", quality=90)


def widget() -> None:
    import napari
    from skimage import data

    from napari_fast_style._widgets import StylizeWidget

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1400, 900)
    viewer.add_image(data.astronaut(), name="astronaut", rgb=True)
    w = StylizeWidget(viewer)
    viewer.window.add_dock_widget(w, name="Stylize", area="right")
    w.reset_choices()
    w.layer_combo.value = viewer.layers["astronaut"]
    worker = w.apply()
    app = napari.qt.get_qapp()
    while w.runner.running:
        app.processEvents()
    viewer.layers["astronaut"].visible = True
    viewer.layers[-1].translate = (0, 520)
    viewer.reset_view()
    img = viewer.screenshot(canvas_only=False, flash=False)
    Image.fromarray(img).save(DOCS / "widget.png")
    viewer.close()
    del worker


if __name__ == "__main__":
    example()
    widget()
