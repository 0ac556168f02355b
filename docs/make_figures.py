"""Regenerate the README figures: ``python docs/make_figures.py`` (needs a display: run under xvfb-run).

* ``docs/stylize_example.jpg``: the contact sheet: scikit-image's public-domain astronaut and coffee
  photos, original and stylized with every bundled style model (``classic`` ones aside).
* ``docs/classic_vs_fast.jpg``: one row per painting: the same photos through its ``fast`` and its ``classic`` model.
* ``docs/widget.png``: napari with the Stylize dock widget after a run.
"""
from __future__ import annotations

import sys
import textwrap
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
    originals = (data.astronaut(), np.asarray(Image.fromarray(data.coffee()).resize((512, 341)))[:, 85:426])
    photos = [np.asarray(Image.fromarray(img).resize((tile, tile), Image.BICUBIC)) for img in originals]
    _sheet(photos, [e.name for e in models], [e.name.removesuffix("-fast") for e in models], tile,
           DOCS / "stylize_example.jpg")
    # the classic models beside their fast twins: one row per painting
    classic = [e.name for e in bundled if e.arch == "classic"]
    if classic:
        _pairs(originals, classic, tile * 3 // 4, DOCS / "classic_vs_fast.jpg")


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


def _pairs(photos, classic: list, tile: int, out: Path) -> None:
    """One row per painting: its name, then each photo through the ``fast`` model and through the ``classic``."""
    from PIL import ImageDraw, ImageFont

    from napari_fast_style.engine import stylize

    photos = [np.asarray(Image.fromarray(img).resize((tile, tile), Image.BICUBIC)) for img in photos]
    label_w, header_h = 150, 28
    font = ImageFont.load_default(size=14)
    rows = []
    for name in classic:
        twins = (name.replace("-classic", "-fast"), name)
        row = Image.fromarray(np.concatenate([stylize(img, m) for img in photos for m in twins], axis=1))
        canvas = Image.new("RGB", (label_w + row.width, tile), "white")
        canvas.paste(row, (label_w, 0))
        label = textwrap.fill(name.removesuffix("-classic").replace("_", " "), 14)
        ImageDraw.Draw(canvas).multiline_text((8, tile // 2), label, fill="black", font=font, anchor="lm")
        rows.append(np.asarray(canvas))
    body = np.concatenate(rows, axis=0)
    header = Image.new("RGB", (body.shape[1], header_h), "white")
    draw = ImageDraw.Draw(header)
    for i, name in enumerate(["fast", "classic"] * len(photos)):
        draw.text((label_w + i * tile + tile // 2, header_h // 2), name, fill="black", font=font, anchor="mm")
    Image.fromarray(np.concatenate([np.asarray(header), body], axis=0)).save(out, quality=88)


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
