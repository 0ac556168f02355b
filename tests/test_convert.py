"""Every layer kind napari can hold goes in, the right shape and dtype comes out, input untouched."""
import numpy as np
import pytest

from napari_fast_style.engine import ImageError, describe, stylize
from napari_fast_style.engine.convert import PlaneReader, from_unit

CASES = [
    # (shape, dtype, rgb, expected output shape, expected dtype)
    ((40, 48), np.uint8, False, (40, 48, 3), np.uint8),
    ((40, 48), np.uint16, False, (40, 48, 3), np.float32),
    ((40, 48), np.int16, False, (40, 48, 3), np.float32),
    ((40, 48), np.int32, False, (40, 48, 3), np.float32),
    ((40, 48), np.float32, False, (40, 48, 3), np.float32),
    ((40, 48), np.float64, False, (40, 48, 3), np.float32),
    ((40, 48), bool, False, (40, 48, 3), np.float32),
    ((40, 48, 3), np.uint8, True, (40, 48, 3), np.uint8),
    ((40, 48, 3), np.float32, True, (40, 48, 3), np.float32),
    ((40, 48, 4), np.uint8, True, (40, 48, 4), np.uint8),
    ((40, 48, 4), np.float32, True, (40, 48, 4), np.float32),
    ((3, 40, 48), np.uint16, False, (3, 40, 48, 3), np.float32),
    ((2, 3, 40, 48, 3), np.uint8, True, (2, 3, 40, 48, 3), np.uint8),
]


def make(shape, dtype, rng):
    if dtype == bool:
        return rng.random(shape) > 0.5
    if np.dtype(dtype).kind == "f":
        return rng.random(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -1000), min(info.max, 5000), size=shape).astype(dtype)


@pytest.mark.parametrize("shape,dtype,rgb,out_shape,out_dtype", CASES)
def test_layer_kinds(shape, dtype, rgb, out_shape, out_dtype, random_model, rng):
    img = make(shape, dtype, rng)
    before = img.copy()
    out = stylize(img, str(random_model()), rgb=rgb, device="cpu")
    assert out.shape == out_shape
    assert out.dtype == out_dtype
    np.testing.assert_array_equal(img, before)  # never modified
    if out.dtype == np.float32:
        assert out.min() >= 0 and out.max() <= 1
    if shape[-1] == 4 and rgb:
        np.testing.assert_array_equal(out[..., 3], img[..., 3])  # alpha carried through untouched


def test_current_plane_only(random_model, rng):
    stack = make((4, 40, 48), np.uint8, rng)
    model = str(random_model())
    one = stylize(stack, model, plane=(2,), device="cpu", precision="fp32")
    full = stylize(stack, model, device="cpu", precision="fp32")
    assert one.shape == (40, 48, 3)
    np.testing.assert_array_equal(one, full[2])


@pytest.mark.parametrize("shape,dtype,rgb", [((40, 48, 3), np.uint8, True), ((40, 48, 4), np.uint8, True),
                                            ((40, 48, 3), np.float32, True)])
def test_strength_zero_returns_input(shape, dtype, rgb, random_model, rng):
    img = make(shape, dtype, rng)
    out = stylize(img, str(random_model()), strength=0.0, device="cpu")
    np.testing.assert_allclose(out, img, atol=1e-6)


def test_strength_zero_grey_becomes_rgb(random_model, rng):
    img = make((40, 48), np.uint8, rng)
    out = stylize(img, str(random_model()), strength=0.0, device="cpu")
    np.testing.assert_array_equal(out, np.repeat(img[..., None], 3, axis=-1))


def test_strength_blends_linearly(random_model, rng):
    img = make((40, 48, 3), np.float32, rng)
    m = str(random_model())
    full = stylize(img, m, device="cpu", precision="fp32")
    half = stylize(img, m, strength=0.5, device="cpu", precision="fp32")
    np.testing.assert_allclose(half, np.clip(0.5 * full + 0.5 * img, 0, 1), atol=1e-5)


def test_preserve_color_keeps_chrominance(random_model, rng):
    from napari_fast_style.engine.stylize import _RGB2YIQ

    img = make((40, 48, 3), np.float32, rng) * 0.5 + 0.25
    m = str(random_model())
    styl = stylize(img, m, device="cpu", precision="fp32")
    kept = stylize(img, m, preserve_color=True, device="cpu", precision="fp32")
    inside = (kept > 0.001).all(-1) & (kept < 0.999).all(-1)  # where nothing was clipped
    assert inside.mean() > 0.5
    np.testing.assert_allclose((kept @ _RGB2YIQ[1:].T)[inside], (img @ _RGB2YIQ[1:].T)[inside], atol=2e-3)
    np.testing.assert_allclose((kept @ _RGB2YIQ[0])[inside], (styl @ _RGB2YIQ[0])[inside], atol=2e-3)


def test_contrast_limits_are_what_is_seen(random_model):
    """Values outside the contrast limits saturate exactly as the display does."""
    img = np.array([[0, 100, 200, 60000]] * 20, dtype=np.uint16).repeat(5, axis=1)
    lay = describe(img, limits=(100, 200))
    r = PlaneReader(img, lay)
    u = r.unit(img)
    assert u[0, 0, 0] == 0 and u[0, 5, 0] == 0 and u[0, 10, 0] == 1 and u[0, 15, 0] == 1


def test_uint16_round_trip_through_input_dtype():
    img = np.linspace(1000, 3000, 64 * 64).reshape(64, 64).astype(np.uint16)
    lay = describe(img)
    r = PlaneReader(img, lay)
    back = from_unit(r.unit(img), lay, np.dtype(np.uint16))
    np.testing.assert_array_equal(back[..., 0], img)


@pytest.mark.parametrize("bad,msg", [
    (np.zeros((10,), np.uint8), "at least a 2D"),
    (np.zeros((40, 40), np.complex64), "dtype"),
    (np.zeros((8, 8, 3), np.uint8), "at least 16"),
    (np.zeros((0, 40), np.uint8), "empty"),
])
def test_bad_images_give_clear_errors(bad, msg, random_model):
    with pytest.raises(ImageError, match=msg):
        stylize(bad, str(random_model()), device="cpu")


def test_nan_and_constant_images(random_model):
    img = np.full((32, 32), np.nan, dtype=np.float32)
    img[0, 0] = 1.0
    out = stylize(img, str(random_model()), device="cpu")
    assert np.isfinite(out).all()
    out = stylize(np.full((32, 32), 7, np.uint16), str(random_model()), device="cpu")
    assert np.isfinite(out).all()


def test_bad_arguments(random_model):
    img = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="strength"):
        stylize(img, str(random_model()), strength=1.5)
    with pytest.raises(ImageError, match="plane"):
        stylize(np.zeros((2, 32, 32), np.uint8), str(random_model()), plane=(5,))
