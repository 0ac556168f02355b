"""Stylize dock widget in a real napari viewer: success, Stop, error paths; the input is untouched."""
import numpy as np
import pytest

from napari_fast_style._widgets import CURRENT, StylizeWidget


@pytest.fixture
def widget(make_napari_viewer, random_model, user_models):
    import shutil

    user_models.mkdir(parents=True, exist_ok=True)
    shutil.copy(random_model(), user_models / "rand-fast.safetensors")
    viewer = make_napari_viewer()
    w = StylizeWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.reset_choices()
    w.model_combo.value = "rand-fast"
    w.device.value = "cpu"
    return viewer, w


def run_and_wait(qtbot, w):
    worker = w.apply()
    assert worker is not None
    # the runner clears its worker in the `finished` slot; an instant error may finish before a
    # waitSignal could be connected, so wait on that state instead
    qtbot.waitUntil(lambda: not w.runner.running, timeout=60_000)
    return worker


def test_default_style_is_preselected(make_napari_viewer, random_model, user_models):
    import shutil

    from napari_fast_style.engine.models import DEFAULT_STYLE

    user_models.mkdir(parents=True, exist_ok=True)
    shutil.copy(random_model(), user_models / "aaa-fast.safetensors")  # sorts before every bundled name
    w = StylizeWidget(make_napari_viewer())
    assert w.model_combo.value == DEFAULT_STYLE


def test_multi_style_model_gets_one_blend_slider_per_style(qtbot, widget, random_model, user_models, monkeypatch):
    import shutil

    viewer, w = widget
    shutil.copy(random_model(n_styles=3), user_models / "trio-fast.safetensors")
    w.refresh_models()
    assert not w.blend.visible or w.blend_weights() is None  # single-style model: no blend
    w.model_combo.value = "trio-fast"
    assert [s.name for s in w.blend] == ["s0", "s1", "s2"] and w.blend_weights() == {"s0": 1.0, "s1": 0.0, "s2": 0.0}
    w.blend["s0"].value, w.blend["s2"].value = 0.25, 0.75
    layer = viewer.add_image((np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8), rgb=True)
    w.layer_combo.value = layer
    run_and_wait(qtbot, w)
    assert viewer.layers[-1].metadata["napari_fast_style"]["style_weights"] == [0.25, 0.0, 0.75]
    for slider in w.blend:
        slider.value = 0.0
    errors = []
    monkeypatch.setattr("napari_fast_style._widgets.show_error", lambda msg: errors.append(msg))
    assert w.apply() is None  # all weights zero: a notification, no run
    assert errors and "at least one style above 0" in errors[0]


def test_stylize_adds_layer_and_keeps_input(qtbot, widget):
    viewer, w = widget
    data = (np.random.default_rng(0).random((64, 80, 3)) * 255).astype(np.uint8)
    layer = viewer.add_image(data.copy(), name="photo", rgb=True, scale=(0.5, 0.25), translate=(10, 20))
    w.layer_combo.value = layer
    run_and_wait(qtbot, w)
    assert [ly.name for ly in viewer.layers] == ["photo", "photo [random]"]
    out = viewer.layers["photo [random]"]
    assert out.rgb and out.data.shape == (64, 80, 3) and out.data.dtype == np.uint8
    np.testing.assert_array_equal(out.scale, layer.scale)
    np.testing.assert_array_equal(out.translate, layer.translate)
    meta = out.metadata["napari_fast_style"]
    assert meta["model"] == "rand-fast" and meta["source_layer"] == "photo" and meta["strength"] == 1.0
    np.testing.assert_array_equal(layer.data, data)  # the input layer is untouched
    assert not w.runner.running and w.apply_btn.enabled and not w.stop_btn.enabled


def test_current_plane_of_a_grey_stack(qtbot, widget):
    viewer, w = widget
    stack = (np.random.default_rng(1).random((5, 48, 48)) * 3000).astype(np.uint16)
    layer = viewer.add_image(stack, name="tl", contrast_limits=(0, 3000))
    viewer.dims.set_current_step(0, 3)
    w.layer_combo.value = layer
    assert not w.scope.native.isHidden()
    w.scope.value = CURRENT
    run_and_wait(qtbot, w)
    out = viewer.layers[-1]
    assert out.data.shape == (48, 48, 3) and out.rgb
    assert out.metadata["napari_fast_style"]["source_plane"] == [3]


def test_stop_keeps_finished_planes(qtbot, widget):
    viewer, w = widget
    stack = (np.random.default_rng(2).random((30, 64, 64, 3)) * 255).astype(np.uint8)
    layer = viewer.add_image(stack, name="movie", rgb=True)
    w.layer_combo.value = layer
    stopped = []

    def stop_once(p):
        if p.step >= 2 and not stopped:
            stopped.append(p.step)
            w.runner.stop()

    worker = w.apply()
    worker.yielded.connect(stop_once)
    qtbot.waitUntil(lambda: not w.runner.running, timeout=60_000)
    out = viewer.layers[-1]
    assert out.name.endswith("(partial)")
    meta = out.metadata["napari_fast_style"]
    assert meta["cancelled"] and 2 <= meta["planes_done"] < 30
    np.testing.assert_array_equal(layer.data, stack)


def test_error_becomes_notification_and_nothing_added(qtbot, widget, monkeypatch):
    viewer, w = widget
    errors = []
    monkeypatch.setattr("napari_fast_style._widgets.show_error", lambda msg: errors.append(msg))
    tiny = viewer.add_image(np.zeros((8, 8), np.uint8), name="tiny")
    w.layer_combo.value = tiny
    run_and_wait(qtbot, w)
    assert errors and "at least 16x16" in errors[0]
    assert [ly.name for ly in viewer.layers] == ["tiny"]
    assert not w.runner.running and w.apply_btn.enabled


def test_no_layer_is_an_error(widget, monkeypatch):
    viewer, w = widget
    errors = []
    monkeypatch.setattr("napari_fast_style._widgets.show_error", lambda msg: errors.append(msg))
    assert w.apply() is None
    assert errors and "select an image layer" in errors[0]


def test_model_dropdown_refreshes_when_a_model_is_added(qtbot, widget, random_model, user_models):
    import os

    viewer, w = widget
    os.replace(random_model(name="another"), user_models / "brand-new.safetensors")  # as training saves
    qtbot.waitUntil(lambda: "brand-new" in w.model_combo.choices, timeout=5000)



def test_optimise_method_live_updates_and_stop(qtbot, widget, vgg_path):
    from napari_fast_style._widgets import OPTIMISE

    viewer, w = widget
    from skimage import data

    content = viewer.add_image(data.astronaut()[::8, ::8].copy(), name="photo", rgb=True, scale=(2.0, 2.0))
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[..., 2] = 255 * (np.indices((64, 64))[1] // 4 % 2)
    viewer.add_image(stripes, name="stripes", rgb=True)
    w.reset_choices()
    w.method.value = OPTIMISE
    assert not w.style_layers.native.isHidden() and w.model_combo.native.isHidden()
    w.layer_combo.value = content
    w.style_layers.value = ["stripes"]
    w.iterations.value = 200
    w.size.value = 32
    w.vgg_file.value = vgg_path
    w.device.value = "cpu"
    updates = []

    def on_yield(p):
        if p.preview is not None:
            updates.append(p.step)
        if p.step >= 12:
            w.runner.stop()

    worker = w.apply()
    worker.yielded.connect(on_yield)
    qtbot.waitUntil(lambda: not w.runner.running, timeout=120_000)
    out = viewer.layers["photo [optimised: stripes]"]
    assert len(updates) >= 2  # the layer was updated live
    assert out.data.shape == (32, 32, 3)
    meta = out.metadata["napari_fast_style"]
    assert meta["cancelled"] and meta["iterations_done"] < 200
    # 64 px on a 2.0 grid resampled to 32 px: 4.0 per pixel, centres aligned
    np.testing.assert_allclose(out.scale, [4.0, 4.0])
    np.testing.assert_allclose(out.translate, [1.0, 1.0])
    np.testing.assert_array_equal(content.data, data.astronaut()[::8, ::8])


def test_train_widget_trains_stops_and_model_appears(qtbot, make_napari_viewer, vgg_path, user_models):
    from skimage import data

    from napari_fast_style._widgets import StylizeWidget, TrainStyleWidget

    viewer = make_napari_viewer()
    stylize_w = StylizeWidget(viewer)
    viewer.window.add_dock_widget(stylize_w)
    w = TrainStyleWidget(viewer)
    viewer.window.add_dock_widget(w)
    painting = viewer.add_image(data.coffee()[:96, :96].copy(), name="painting", rgb=True)
    viewer.add_shapes([np.array([[10, 10], [10, 80], [80, 80], [80, 10]])], shape_type="rectangle", name="roi")
    w.reset_choices()
    w.style_layer.value = painting
    w.region.value = "roi"
    w.train_size.value = 32
    w.budget_kind.value = "steps"
    w.budget.value = 500
    w.model_name.value = "coffee-style"
    w.vgg_file.value = vgg_path
    w.device.value = "cpu"
    steps = []

    def on_yield(p):
        steps.append(p.step)
        if p.step >= 12:
            w.runner.stop()

    worker = w.train()
    assert worker is not None
    worker.yielded.connect(on_yield)
    qtbot.waitUntil(lambda: not w.runner.running, timeout=180_000)
    res = w.last_result
    assert res is not None and res.cancelled and 12 <= res.steps < 500
    assert (user_models / "coffee-style.safetensors").is_file()
    from napari_fast_style.engine import read_metadata
    from napari_fast_style.engine.models import DEFAULT_STYLE

    # by default a new style is fine-tuned from the default bundled style (faster on a CPU)
    recipe = read_metadata(user_models / "coffee-style.safetensors")["recipe"]
    assert recipe["init_from"] == f"{DEFAULT_STYLE}.safetensors"
    assert "training preview: coffee-style" in [ly.name for ly in viewer.layers]  # live preview layer
    assert w.plot.points["style"]  # the loss curve has data
    qtbot.waitUntil(lambda: "coffee-style" in stylize_w.model_combo.choices, timeout=5000)
    np.testing.assert_array_equal(painting.data, data.coffee()[:96, :96])
    # the same name again is refused with a notification, nothing overwritten
    errors = []
    import napari_fast_style._widgets as wmod

    orig = wmod.show_error
    wmod.show_error = errors.append
    try:
        assert w.train() is None
    finally:
        wmod.show_error = orig
    assert errors and "exists already" in errors[0]
