"""VGG16 loss network (real weights) and the perceptual losses (closed form + float64 gradcheck)."""
import pytest
import torch

from napari_fast_style.engine import ModelError, load_vgg
from napari_fast_style.engine.losses import content_loss, gram, style_loss, tv_loss
from src_models import VGG16_TAPS, Preprocess, VGGFeatures


def test_taps_and_shapes(vgg):
    x = torch.rand(1, 3, 64, 48)
    f = vgg(x)
    assert list(f) == ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]
    assert f["relu1_2"].shape == (1, 64, 64, 48) and f["relu4_3"].shape == (1, 512, 8, 6)
    assert all((v >= 0).all() for v in f.values())
    assert not any(p.requires_grad for p in vgg.parameters())
    assert VGG16_TAPS["relu5_3"] == 29 and VGG16_TAPS["relu2_2"] == 8


def test_upto_stops_after_a_tap_with_the_same_activations(vgg):
    x = torch.rand(1, 3, 32, 32)
    full, part = vgg(x), vgg(x, upto="relu3_3")
    assert list(part) == ["relu1_2", "relu2_2", "relu3_3"]
    for k in part:
        torch.testing.assert_close(part[k], full[k], rtol=0, atol=0)
    with pytest.raises(ValueError, match="not one of this network's taps"):
        vgg(x, upto="relu5_3")


def test_caffe_preprocessing_matches_reference(vgg_path):
    """The caffe convention reproduces the yardstick's own preprocessing (BGR, 0..255, mean)."""
    pre = Preprocess("caffe")
    x = torch.rand(1, 3, 4, 4)
    ref = x.flip(1) * 255 - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    torch.testing.assert_close(pre(x), ref)
    assert "mean" not in pre.state_dict()  # non-persistent buffer


def test_real_weights_recognise_structure(vgg):
    """Real weights respond to a natural image more than to flat grey (random weights would not care)."""
    from skimage import data

    img = torch.from_numpy(data.astronaut()[:128, :128].copy()).permute(2, 0, 1)[None].float() / 255
    flat = torch.full_like(img, 0.5)
    assert vgg(img)["relu3_3"].mean() > 3 * vgg(flat)["relu3_3"].mean()


def test_torchvision_layouts_load(vgg_path):
    base = torch.load(vgg_path, weights_only=True)["state_dict"]
    full = {f"features.{k}": v for k, v in base.items()}
    full["classifier.0.weight"] = torch.zeros(4, 4)  # a full vgg16 state dict has a classifier
    net = load_vgg(full, ("relu2_2",))
    assert net.preprocess.convention == "torchvision"
    feats_only = load_vgg(dict(base), ("relu1_2",), convention="torchvision")
    assert feats_only.preprocess.convention == "torchvision"
    with pytest.raises(ModelError, match="convention"):
        load_vgg(dict(base), ("relu1_2",))
    with pytest.raises(ModelError, match="download"):
        load_vgg("torchvision")
    with pytest.raises(ModelError, match="not found"):
        load_vgg("/nonexistent/vgg.pth")


def test_gram_closed_form():
    f = torch.arange(12, dtype=torch.float64).reshape(1, 3, 2, 2)
    g = gram(f)
    flat = f.reshape(3, 4)
    torch.testing.assert_close(g[0], flat @ flat.T / 12)


def test_losses_closed_form():
    a = torch.ones(1, 2, 3, 3, dtype=torch.float64)
    assert float(content_loss(2 * a, a)) == pytest.approx(1.0)
    assert float(content_loss(a, a)) == 0.0
    img = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    img[..., 0, 1] = 1.0  # one step right in row 0; one step down in column 1
    assert float(tv_loss(img)) == pytest.approx(0.5 + 0.5)
    g = {"x": gram(a)[0]}
    assert float(style_loss({"x": a}, g)) == 0.0
    assert float(style_loss({"x": 2 * a}, g)) == pytest.approx(9.0)  # (4G - G)^2 / G^2


def test_style_loss_per_image():
    a = torch.ones(1, 2, 3, 3, dtype=torch.float64)
    g = {"x": gram(a)[0]}
    batch = torch.cat([a, 2 * a, 3 * a])  # Gram 1x, 4x, 9x the target's: relative errors 0, 9, 64
    per_image = style_loss({"x": batch}, g, reduction="none")
    assert per_image.tolist() == pytest.approx([0.0, 9.0, 64.0])
    assert float(style_loss({"x": batch}, g)) == pytest.approx(73.0 / 3)
    with pytest.raises(ValueError, match="reduction"):
        style_loss({"x": batch}, g, reduction="sum")


def test_losses_gradcheck():
    torch.manual_seed(0)
    y = torch.rand(1, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    x = torch.rand(1, 3, 5, 4, dtype=torch.float64)
    target = {"t": gram(torch.rand(1, 3, 5, 4, dtype=torch.float64))[0]}
    assert torch.autograd.gradcheck(lambda v: style_loss({"t": v}, target), (y,))
    assert torch.autograd.gradcheck(lambda v: content_loss(v, x), (y,))
    assert torch.autograd.gradcheck(tv_loss, (y,))


def test_gram_is_float32_under_autocast():
    f = torch.rand(2, 4, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        g = gram(f.bfloat16())
    assert g.dtype == torch.float32


def test_unknown_taps():
    with pytest.raises(ValueError, match="unknown VGG16 taps"):
        VGGFeatures(("relu9_9",))
