"""Super-resolve dock widget in a real napari viewer: success (world-coordinate overlay), current
plane, Stop, and error paths; the input layer is never modified."""
import numpy as np
import pytest

from napari_fast_style._widgets import CURRENT, SuperResolveWidget

from .test_superres import make_sr_net, one_thread, save_sr  # noqa: F401 - one_thread: autouse fixture
from .test_widget import run_and_wait


@pytest.fixture
def widget(make_napari_viewer, user_models):
    save_sr(make_sr_net(4), user_models / "sr-rand4.safetensors")
    viewer = make_napari_viewer()
    w = SuperResolveWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.reset_choices()
    w.model_combo.value = "sr-rand4"
    w.device.value = "cpu"
    return viewer, w


def test_superres_overlays_the_input_in_world_coordinates(qtbot, widget):
    viewer, w = widget
    data = (np.random.default_rng(0).random((24, 30)) * 2000 + 1000).astype(np.uint16)
    layer = viewer.add_image(data.copy(), name="cells", scale=(2, 2), translate=(10, 20), contrast_limits=(1000, 2500))
    w.layer_combo.value = layer
    assert w.factor.value == 4 and w.scope.native.isHidden()
    run_and_wait(qtbot, w)
    assert [ly.name for ly in viewer.layers] == ["cells", "cells [x4 fidelity]"]
    out = viewer.layers["cells [x4 fidelity]"]
    assert out.data.shape == (96, 120) and out.data.dtype == np.uint16 and not out.rgb  # grey stays grey
    # 4x4 output pixels per input pixel, pixel centres aligned: scale / 4, translate + 2 * (1/4 - 1) / 2
    np.testing.assert_allclose(out.scale, [0.5, 0.5])
    np.testing.assert_allclose(out.translate, [9.25, 19.25])
    # the first input pixel covers world [9, 11] x [19, 21], and so do its 4x4 output pixels
    np.testing.assert_allclose(out.data_to_world([-0.5, -0.5]), layer.data_to_world([-0.5, -0.5]))
    np.testing.assert_allclose(out.data_to_world([95.5, 119.5]), layer.data_to_world([23.5, 29.5]))
    np.testing.assert_allclose(out.contrast_limits, [1000, 2500])
    meta = out.metadata["napari_fast_style"]
    assert meta["scale"] == 4 and meta["variant"] == "fidelity" and meta["model"] == "sr-rand4"
    assert meta["source_layer"] == "cells" and meta["source_plane"] is None
    np.testing.assert_array_equal(layer.data, data)  # the input layer is untouched
    assert not w.runner.running and w.apply_btn.enabled and not w.stop_btn.enabled


def test_rgb_current_plane_of_a_stack(qtbot, widget):
    viewer, w = widget
    stack = (np.random.default_rng(1).random((4, 16, 20, 3)) * 255).astype(np.uint8)
    layer = viewer.add_image(stack, name="movie", rgb=True, scale=(5, 1, 1))
    viewer.dims.set_current_step(0, 2)
    w.layer_combo.value = layer
    assert not w.scope.native.isHidden()
    w.scope.value = CURRENT
    run_and_wait(qtbot, w)
    out = viewer.layers[-1]
    assert out.name == "movie [x4 fidelity] plane (2,)"
    assert out.rgb and out.data.shape == (64, 80, 3) and out.data.dtype == np.uint8
    np.testing.assert_allclose(out.scale, [0.25, 0.25])
    assert out.metadata["napari_fast_style"]["source_plane"] == [2]


def test_stop_keeps_finished_planes(qtbot, widget):
    viewer, w = widget
    stack = (np.random.default_rng(2).random((40, 64, 64)) * 255).astype(np.uint8)
    layer = viewer.add_image(stack, name="tl", scale=(3, 2, 2))
    w.layer_combo.value = layer
    w.apply().yielded.connect(lambda p: w.runner.stop() if p.step == 2 else None)  # Stop after 2 planes
    qtbot.waitUntil(lambda: not w.runner.running, timeout=60_000)
    out = viewer.layers[-1]
    assert out.name == "tl [x4 fidelity] (partial)"
    assert out.data.shape == (40, 256, 256)
    np.testing.assert_allclose(out.scale, [3, 0.5, 0.5])  # the stack axis keeps its spacing
    meta = out.metadata["napari_fast_style"]
    assert meta["cancelled"] and 2 <= meta["planes_done"] < 40
    np.testing.assert_array_equal(layer.data, stack)
    assert not w.runner.running and w.apply_btn.enabled


def test_errors_become_notifications_and_nothing_is_added(qtbot, widget, monkeypatch, tmp_path):
    viewer, w = widget
    errors = []
    monkeypatch.setattr("napari_fast_style._widgets.show_error", lambda msg: errors.append(msg))
    assert w.apply() is None  # no layer yet
    assert "select an image layer" in errors.pop()
    tiny = viewer.add_image(np.zeros((2, 2), np.uint8), name="tiny")
    w.layer_combo.value = tiny
    run_and_wait(qtbot, w)  # the engine refuses it in the worker
    assert "at least 4x4" in errors.pop()
    assert not w.runner.running and w.apply_btn.enabled
    # the variant names need a bundled model of that factor (none in this empty folder)
    monkeypatch.setattr("napari_fast_style.engine.models.bundled_model_dir", lambda: tmp_path / "none")
    w.model_combo.value = "perceptual"
    w.factor.value = 8
    assert w.apply() is None
    assert "no bundled x8 perceptual" in errors.pop()
    assert not errors and [ly.name for ly in viewer.layers] == ["tiny"]
