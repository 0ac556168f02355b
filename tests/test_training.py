"""Short real training runs on the real VGG16: the style loss falls, resume continues, stop is clean."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from napari_fast_style.engine import (CancelToken, LoopConfig, StyleTrainConfig, list_models, load_model, run_sync,
                                      stylize, train_style, train_style_iter)
from napari_fast_style.engine.data import ContentSet, sample_images
from napari_fast_style.engine.losses import style_loss
from napari_fast_style.engine.training import checkpoint_path, style_targets


@pytest.fixture(scope="module")
def content():
    return ContentSet(sample_images(), short_side=96)


@pytest.fixture(scope="module")
def style_image():
    from skimage import data

    return data.colorwheel()[..., :3] if data.colorwheel().ndim == 3 else data.colorwheel()


def cfg(steps, **kw):
    loop = LoopConfig(steps=steps, seed=0, device="cpu", precision="fp32", checkpoint_every=5, preview_every=10,
                      lr=kw.pop("lr", 2e-3), lr_schedule=kw.pop("lr_schedule", "constant"))
    return StyleTrainConfig(arch="fast", size=32, batch_size=2, style_size=64, content_size=96, loop=loop, **kw)


@pytest.mark.slow
def test_training_lowers_style_loss_on_held_out_crops(tmp_path, vgg, content, style_image):
    from napari_fast_style.engine.training import _image_to_tensor

    held = content.batch(4, 32, torch.Generator().manual_seed(123))
    targets = style_targets(vgg, _image_to_tensor(style_image, 64), ("relu1_2", "relu2_2", "relu3_3", "relu4_3"))

    def held_loss(net):
        with torch.no_grad():
            return float(style_loss(vgg(net(held * 255) / 255), targets))

    from src_models import transformer_net

    torch.manual_seed(0)
    before = held_loss(transformer_net("fast").eval())
    previews = []
    res = run_sync(train_style_iter(style_image, tmp_path / "wheel.safetensors", content=content, config=cfg(40),
                                    vgg=vgg), lambda p: p.preview is not None and previews.append(p.preview))
    net, entry = load_model(res.path)
    after = held_loss(net)
    assert after < 0.8 * before
    assert res.steps == 40 and len(res.history) == 40 and {"style", "content", "tv"} <= set(res.history[-1])
    assert previews and previews[0].ndim == 3 and previews[0].shape[-1] == 3
    assert entry.metadata["recipe"]["size"] == 32 and entry.metadata["recipe"]["steps"] == 40


@pytest.mark.parametrize("style_norm", ["none", "photo"])
def test_resume_continues_the_same_run(tmp_path, vgg, content, style_image, style_norm):
    straight = run_sync(train_style_iter(style_image, tmp_path / "a.safetensors", content=content,
                                         config=cfg(10, style_norm=style_norm), vgg=vgg))
    run_sync(train_style_iter(style_image, tmp_path / "b.safetensors", content=content,
                              config=cfg(5, style_norm=style_norm), vgg=vgg))
    resumed = run_sync(train_style_iter(style_image, tmp_path / "b.safetensors", content=content,
                                        config=cfg(10, style_norm=style_norm), vgg=vgg, resume=True))
    assert resumed.steps == 10
    assert [h["step"] for h in resumed.history] == list(range(1, 11))
    a = torch.load(checkpoint_path(straight.path), weights_only=True)["model"]
    b = torch.load(checkpoint_path(resumed.path), weights_only=True)["model"]
    for k in a:  # fp32 checkpoints: the same run up to float reduction order
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


def test_linear_lr_schedule_falls_to_zero_and_a_stopped_run_resumes_on_it(tmp_path, vgg, content, style_image):
    straight = run_sync(train_style_iter(style_image, tmp_path / "a.safetensors", content=content,
                                         config=cfg(8, lr_schedule="linear"), vgg=vgg))
    lrs = [h["lr"] for h in straight.history]
    assert lrs == pytest.approx([2e-3 * (1 - k / 8) for k in range(8)])
    token = CancelToken()
    run_sync(train_style_iter(style_image, tmp_path / "b.safetensors", content=content,
                              config=cfg(8, lr_schedule="linear"), vgg=vgg, cancel=token),
             lambda p: p.step == 3 and token.cancel())
    resumed = run_sync(train_style_iter(style_image, tmp_path / "b.safetensors", content=content,
                                        config=cfg(8, lr_schedule="linear"), vgg=vgg, resume=True))
    assert [h["lr"] for h in resumed.history] == pytest.approx(lrs)
    a = torch.load(checkpoint_path(straight.path), weights_only=True)["model"]
    b = torch.load(checkpoint_path(resumed.path), weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    with pytest.raises(ValueError, match="lr_schedule"):
        LoopConfig(steps=1, lr_schedule="cosine")


def test_photo_normalised_style_loss_trains_and_is_recorded(tmp_path, vgg, content, style_image):
    with pytest.raises(ValueError, match="style_norm"):
        StyleTrainConfig(style_norm="gram")
    plain = run_sync(train_style_iter(style_image, tmp_path / "plain.safetensors", content=content, config=cfg(4),
                                      vgg=vgg))
    norm = run_sync(train_style_iter(style_image, tmp_path / "norm.safetensors", content=content,
                                     config=cfg(4, style_norm="photo"), vgg=vgg))
    # the same seed and crops: the first step's losses are the same, the updates (weighted per photo) are not
    assert norm.history[0]["style"] == pytest.approx(plain.history[0]["style"], rel=1e-5)
    assert norm.history[-1]["style"] != pytest.approx(plain.history[-1]["style"], rel=1e-6)
    assert all(np.isfinite(h["total"]) for h in norm.history)
    recipe = load_model(norm.path)[1].metadata["recipe"]
    assert recipe["style_norm"] == "photo"
    # the scale: the mean own distance of fixed probe crops, recorded with the model, the same whatever the seed
    assert len(recipe["photo_scale"]) == 1 and 0 < recipe["photo_scale"][0] < 10
    c = cfg(1, style_norm="photo")
    other = run_sync(train_style_iter(style_image, tmp_path / "seed7.safetensors", content=content, vgg=vgg,
                                      config=replace(c, loop=replace(c.loop, seed=7))))
    assert load_model(other.path)[1].metadata["recipe"]["photo_scale"] == recipe["photo_scale"]


def test_stopped_run_leaves_a_loadable_model_and_no_temp_files(tmp_path, vgg, content, style_image):
    token = CancelToken()

    def stop(p):
        if p.step == 3:
            token.cancel()

    res = run_sync(train_style_iter(style_image, tmp_path / "stopped.safetensors", content=content, config=cfg(1000),
                                    vgg=vgg, cancel=token), stop)
    assert res.cancelled and res.steps == 3
    out = stylize(np.zeros((32, 32, 3), np.uint8), str(res.path), device="cpu")
    assert out.shape == (32, 32, 3)
    assert checkpoint_path(res.path).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_train_style_api_lists_in_user_dir(user_models, vgg_path):
    from skimage import data

    path = train_style(data.coffee(), user_models / "coffee-fast.safetensors", content=[data.astronaut()],
                       size=32, steps=2, device="cpu", vgg=vgg_path, batch_size=1, style_size=64, content_size=64)
    assert "coffee-fast" in [e.name for e in list_models("style")]
    assert stylize(data.astronaut()[:64, :64], path).shape == (64, 64, 3)
    # fine-tune it by name: the start model's architecture is kept
    tuned = train_style(data.coffee(), user_models / "coffee2.safetensors", content=[data.astronaut()], size=32,
                        steps=1, device="cpu", vgg=vgg_path, batch_size=1, style_size=64, content_size=64,
                        init_from="coffee-fast", arch="classic")
    meta = load_model(tuned)[1].metadata
    assert meta["arch"] == "fast" and meta["recipe"]["init_from"] == "coffee-fast.safetensors"


def test_bad_training_inputs(tmp_path, vgg_path):
    from napari_fast_style.engine import DataError, ModelError

    with pytest.raises(DataError, match="not found"):
        train_style(tmp_path / "nope.jpg", tmp_path / "x.safetensors", steps=1, vgg=vgg_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        train_style(np.zeros((64, 64, 3), np.uint8), tmp_path / "x.safetensors", content=tmp_path / "empty",
                    steps=1, vgg=vgg_path)
    with pytest.raises(ModelError, match="nothing to resume"):
        train_style(np.zeros((64, 64, 3), np.uint8), tmp_path / "y.safetensors", content=[np.zeros((64, 64))],
                    steps=1, vgg=vgg_path, resume=True, size=32)
    with pytest.raises(ValueError, match="multiple of 8"):
        StyleTrainConfig(size=30)


def test_cli_train_errors_exit_2(tmp_path):
    from napari_fast_style.cli import main

    assert main(["train", str(tmp_path / "missing.jpg"), "-o", str(tmp_path / "o.safetensors")]) == 2
    style = tmp_path / "s.png"
    from PIL import Image

    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(style)
    (tmp_path / "empty").mkdir()
    assert main(["train", str(style), "-o", str(tmp_path / "o.safetensors"), "--content",
                 str(tmp_path / "empty")]) == 2
    assert not (tmp_path / "o.safetensors").exists()


def test_multi_style_network_blends(tmp_path, vgg, content):
    """One conditional-instance-norm network, two styles; the blend weights select between them."""
    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 0] = 255 * (np.indices((64, 64))[0] // 4 % 2)
    blue = np.zeros((64, 64, 3), np.uint8)
    blue[..., 2] = 255 * (np.indices((64, 64))[1] // 4 % 2)
    res = run_sync(train_style_iter([(red, "red"), (blue, "blue")], tmp_path / "duo.safetensors", content=content,
                                    config=cfg(30, lr=5e-3, style_weight=20.0), vgg=vgg))
    net, entry = load_model(res.path)
    assert entry.styles == ("red", "blue") and net.n_styles == 2
    img = (np.random.default_rng(0).random((48, 48, 3)) * 255).astype(np.uint8)
    r = stylize(img, str(res.path), style_weights={"red": 1.0}, device="cpu").astype(float)
    b = stylize(img, str(res.path), style_weights={"blue": 1.0}, device="cpu").astype(float)
    mid = stylize(img, str(res.path), style_weights={"red": 0.5, "blue": 0.5}, device="cpu").astype(float)
    assert r[..., 0].mean() - r[..., 2].mean() > b[..., 0].mean() - b[..., 2].mean()
    assert np.abs(mid - r).mean() > 1 and np.abs(mid - b).mean() > 1


def test_multi_style_network_takes_a_style_weight_per_style(tmp_path, vgg, content):
    """One style weight per style: each step's total is its style loss times the weight of the style
    drawn for it (both weights get used), and a wrong count stops before training."""
    rng = np.random.default_rng(1)
    a, b = ((rng.random((64, 64, 3)) * 255).astype(np.uint8) for _ in range(2))
    config = cfg(8, style_weight=(2.0, 7.0))
    seen = set()
    for p in train_style_iter([(a, "a"), (b, "b")], tmp_path / "duo.safetensors", content=content, config=config,
                              vgg=vgg):
        l = p.losses
        seen.add(round((l["total"] - l["content"] - config.tv_weight * l["tv"]) / l["style"], 2))
    assert seen == {2.0, 7.0}
    assert config.style_weights(2) == (2.0, 7.0) and cfg(1, style_weight=3.0).style_weights(2) == (3.0, 3.0)
    with pytest.raises(ValueError, match="3 style weights for 2 style images"):
        run_sync(train_style_iter([(a, "a"), (b, "b")], tmp_path / "x.safetensors", content=content,
                                  config=cfg(2, style_weight=(1.0, 2.0, 3.0)), vgg=vgg))
    with pytest.raises(ValueError, match="style weight positive"):
        cfg(2, style_weight=(1.0, 0.0))
    assert not (tmp_path / "x.safetensors").exists()


def test_merge_styles_keeps_each_style_exactly(tmp_path):
    """Two single-style models from one parent (same convolutions, own norm affines) merge into one
    multi-style model whose one-hot styles reproduce each parent model's output."""
    from napari_fast_style.engine import ModelError, merge_styles, save_model
    from .conftest import random_style_net

    a = random_style_net("fast", 1, seed=0)
    b = random_style_net("fast", 1, seed=0)
    with torch.no_grad():
        for m in b.norms():
            m.weight.uniform_(0.2, 2.0)
            m.bias.uniform_(-1.0, 1.0)
    pa = save_model(a, tmp_path / "a-fast.safetensors", kind="style", arch="fast", display_name="a", styles=("a",),
                    half=False)
    pb = save_model(b, tmp_path / "b-fast.safetensors", kind="style", arch="fast", display_name="b", styles=("b",),
                    half=False)
    merged = merge_styles([pa, pb], tmp_path / "ab-fast.safetensors")
    net, entry = load_model(merged)
    assert entry.styles == ("a", "b") and net.n_styles == 2 and entry.metadata["recipe"]["merged_from"]
    img = (np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)
    for name, single in (("a", pa), ("b", pb)):
        want = stylize(img, str(single), device="cpu", precision="fp32").astype(float)
        got = stylize(img, str(merged), style_weights={name: 1.0}, device="cpu", precision="fp32").astype(float)
        assert np.abs(got - want).max() <= 2  # fp16 storage of the merged file
    assert np.abs(stylize(img, str(merged), style_weights={"a": 1.0}, device="cpu").astype(float)
                  - stylize(img, str(merged), style_weights={"b": 1.0}, device="cpu")).mean() > 1
    with pytest.raises(ModelError, match="at least two"):
        merge_styles([pa], tmp_path / "x.safetensors")


def test_cli_train_fine_tunes_multi_style_and_style_size(tmp_path, vgg_path, random_model):
    import json

    from PIL import Image

    from napari_fast_style.cli import main
    from napari_fast_style.engine import read_metadata

    rng = np.random.default_rng(0)
    (tmp_path / "photos").mkdir()
    for i in range(2):
        Image.fromarray((rng.random((48, 48, 3)) * 255).astype(np.uint8)).save(tmp_path / "photos" / f"p{i}.png")
    styles = []
    for name in ("a", "b"):
        styles.append(tmp_path / f"{name}.png")
        Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(styles[-1])
    common = ["--content", str(tmp_path / "photos"), "--size", "32", "--batch-size", "1", "--steps", "2",
              "--vgg", str(vgg_path), "--device", "cpu", "--json"]
    start = random_model("fast")
    out = tmp_path / "tuned.safetensors"
    assert main(["train", str(styles[0]), "-o", str(out), "--init-from", str(start), "--style-size", "48",
                 "--style-norm", "photo", *common]) == 0
    recipe = read_metadata(out)["recipe"]
    assert recipe["init_from"] == start.name and recipe["style_size"] == 48 and recipe["steps"] == 2
    assert recipe["style_norm"] == "photo"
    assert recipe["loop"]["lr_schedule"] == "linear"  # the default for style training
    duo = tmp_path / "duo.safetensors"
    assert main(["train", *map(str, styles), "-o", str(duo), "--lr-schedule", "constant", *common]) == 0
    assert read_metadata(duo)["styles"] == ["a", "b"]
    assert read_metadata(duo)["recipe"]["loop"]["lr_schedule"] == "constant"
    assert main(["train", *map(str, styles), "-o", str(duo), "--style-weight", "2,7", *common]) == 0
    assert read_metadata(duo)["recipe"]["style_weight"] == [2.0, 7.0]
    # errors: an unknown start model, a single-style start for a two-style network, a tiny style size
    assert main(["train", str(styles[0]), "-o", str(tmp_path / "x.safetensors"), "--init-from", "no-such-model",
                 *common]) == 2
    assert main(["train", *map(str, styles), "-o", str(tmp_path / "x.safetensors"), "--init-from", str(start),
                 *common]) == 2
    assert main(["train", str(styles[0]), "-o", str(tmp_path / "x.safetensors"), "--style-size", "8", *common]) == 2
    assert main(["train", *map(str, styles), "-o", str(tmp_path / "x.safetensors"), "--style-weight", "2,7,9",
                 *common]) == 2
    assert not (tmp_path / "x.safetensors").exists()


def test_classic_trains_stably_from_scratch_at_the_default_rate(tmp_path, vgg, content, style_image):
    """``classic``'s wide final layer (9x9 over 32 channels, x255) gets a proportionally lower rate; at the
    rate ``fast`` trains at, its first Adam steps threw the output far out of range (style loss up ~100x)."""
    from napari_fast_style.engine.training import param_groups
    from src_models import transformer_net

    assert len(param_groups(transformer_net("fast"), 1e-3)) == 1  # fast trains exactly as before
    groups = param_groups(transformer_net("classic"), 1e-3)
    assert len(groups) == 2 and groups[1]["lr"] == pytest.approx(1e-3 * 171 / (32 * 81))
    loop = LoopConfig(steps=6, seed=0, device="cpu", precision="fp32", checkpoint_every=3, preview_every=0,
                      lr=1e-3, lr_schedule="linear")
    config = StyleTrainConfig(arch="classic", size=32, batch_size=2, style_size=64, content_size=96, loop=loop)
    out = tmp_path / "c.safetensors"
    run_sync(train_style_iter(style_image, out, content=content, config=replace(config, loop=replace(loop, steps=3)),
                              vgg=vgg))
    resumed = run_sync(train_style_iter(style_image, out, content=content, config=config, vgg=vgg, resume=True))
    styles = [h["style"] for h in resumed.history]
    assert resumed.steps == 6 and max(styles[1:]) < 2 * styles[0], styles
    # the resumed optimiser keeps both groups and the schedule scales each by its own multiplier
    state = torch.load(checkpoint_path(out), weights_only=True)["optimizer"]
    assert [g["lr_scale"] for g in state["param_groups"]] == pytest.approx([1.0, 171 / (32 * 81)])
