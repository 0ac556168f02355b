"""Regenerate the README figures: ``python docs/make_figures.py`` (needs a display: run under xvfb-run).

* ``docs/stylize_example.jpg``: the contact sheet: scikit-image's public-domain astronaut and coffee
  photos, original and stylized with every bundled style model (``classic`` ones aside).
* ``docs/classic_vs_fast.jpg``: the same photos through each bundled ``classic`` model and its ``fast`` twin.
* ``docs/widget.png``: napari with the Stylize dock widget after a run.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))


def example(tile: int = 256) -> None:
    """Contact sheets: a header row of model names, then each photo original and through every bundled style
    (``fast`` and multi-style models), and the ``classic`` models beside their ``fast`` twins."""
    from skimage import data

    from napari_fast_style.engine import list_models

    bundled = [e for e in list_models("style") if e.source == "bundled"]
    models = [e for e in bundled if e.arch != "classic"]
    photos = (data.astronaut(), np.asarray(Image.fromarray(data.coffee()).resize((512, 341)))[:, 85:426])
    photos = [np.asarray(Image.fromarray(img).resize((tile, tile), Image.BICUBIC)) for img in photos]
    _sheet(photos, [e.name for e in models], [e.name.removesuffix("-fast") for e in models], tile,
           DOCS / "stylize_example.jpg")
    # the classic models beside their fast twins
    names = [n for e in bundled if e.arch == "classic" for n in (e.name.replace("-classic", "-fast"), e.name)]
    if names:
        _sheet(photos, names, [n.replace("-classic", " (classic)").replace("-fast", " (fast)") for n in names], tile,
               DOCS / "classic_vs_fast.jpg")


def _sheet(photos, models: list, labels: list, tile: int, out: Path) -> None:
    from PIL import ImageDraw, ImageFont

    from napari_fast_style.engine import stylize

    rows = [np.concatenate([img] + [stylize(img, m) for m in models], axis=1) for img in photos]
    body = np.concatenate(rows, axis=0)
    header = Image.new("RGB", (body.shape[1], 28), "white")
    draw = ImageDraw.Draw(header)
    font = ImageFont.load_default(size=15)
    for i, name in enumerate(["original"] + labels):
        draw.text((i * tile + tile // 2, 14), name.replace("_", " "), fill="black", font=font, anchor="mm")
    sheet = np.concatenate([np.asarray(header), body], axis=0)
    Image.fromarray(sheet).save(out, quality=88)


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
    which = sys.argv[1:] or ["example", "widget"]  # e.g. `python docs/make_figures.py example`
    for name in which:
        {"example": example, "widget": widget}[name]()
