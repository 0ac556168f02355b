"""Exact stylize (Gatys et al.) on the real VGG16: loss falls, blends move, cancel keeps the best image."""
import numpy as np
import pytest
import torch

from napari_fast_style.engine import CancelToken, OptimizeConfig, optimize, optimize_iter, run_sync
from napari_fast_style.engine.losses import gram, style_loss


@pytest.fixture(scope="module")
def images():
    from skimage import data

    content = data.astronaut()[::8, ::8]  # 64x64
    s1 = np.zeros((64, 64, 3), np.uint8)
    s1[..., 2] = 255 * (np.indices((64, 64))[1] // 4 % 2)  # blue stripes
    s2 = np.zeros((64, 64, 3), np.uint8)
    s2[..., 0] = 255 * ((np.indices((64, 64)).sum(0) // 6) % 2)  # red checker diagonals
    return content, s1, s2


def cfg(**kw):
    base = dict(iterations=15, size=64, levels=1, device="cpu", precision="fp32", preview_every=5, tolerance=0)
    base.update(kw)
    return OptimizeConfig(**base)


def style_dist(vgg, img, style):
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float() / 255  # noqa: E731
    with torch.no_grad():
        fs = vgg(t(style))
        fx = vgg(t(img))
    return float(style_loss(fx, {k: gram(v)[0] for k, v in fs.items()}))


def test_optimisation_lowers_style_loss(vgg, images):
    content, s1, _ = images
    previews = []
    res = run_sync(optimize_iter(content, s1, cfg(), network=vgg),
                   lambda p: p.preview is not None and previews.append(p.preview))
    assert res.data.shape == (64, 64, 3) and res.data.dtype == np.uint8
    assert style_dist(vgg, res.data, s1) < 0.5 * style_dist(vgg, content, s1)
    assert len(previews) >= 3 and previews[-1].shape == (64, 64, 3)
    assert res.history[-1]["style"] < res.history[0]["style"]


def test_blend_weights_move_between_styles(vgg, images):
    content, s1, s2 = images
    a = optimize(content, [(s1, 0.9), (s2, 0.1)], iterations=12, size=64, levels=1, device="cpu",
                 precision="fp32", network=vgg, tolerance=0)
    b = optimize(content, [(s1, 0.1), (s2, 0.9)], iterations=12, size=64, levels=1, device="cpu",
                 precision="fp32", network=vgg, tolerance=0)
    assert style_dist(vgg, a, s1) < style_dist(vgg, b, s1)
    assert style_dist(vgg, b, s2) < style_dist(vgg, a, s2)


def test_matched_init_takes_style_colours_and_keeps_content_luminance(images):
    from napari_fast_style.engine.optimize import match_colors

    c = torch.from_numpy(np.ascontiguousarray(images[0].transpose(2, 0, 1)))[None].float() / 255
    s = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(0)) * torch.tensor([0.3, 0.5, 0.9])[:, None, None]
    out = match_colors(c, [(s, 1.0)])
    assert out.shape == c.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    lum = torch.tensor([0.299, 0.587, 0.114])[:, None, None]
    y_out, y_c = (out * lum).sum(1), (c * lum).sum(1)
    # luminance detail is the content's (only its mean moves, clipping aside) ...
    shift = (y_out - y_c)[((out > 0.01) & (out < 0.99)).all(1)]  # unclipped pixels
    assert float(shift.std()) < 0.01 and float(shift.mean()) < -0.1  # one offset: the darker style's mean
    # ... while the colour balance is the style's: blue is now the strongest channel on average
    means = out.mean(dim=(0, 2, 3))
    assert means[2] > means[1] > means[0]
    assert abs(float(y_out.mean()) - float((s * lum).sum(1).mean())) < 0.08  # clipping at 0 lifts it a little


def test_matched_init_starts_closer_to_the_style(vgg, images):
    content, s1, _ = images
    first = {}
    for init in ("content", "matched"):
        res = run_sync(optimize_iter(content, s1, cfg(iterations=1, init=init), network=vgg))
        first[init] = res.history[0]["style"]
    assert first["matched"] < 0.8 * first["content"]


def test_automatic_levels():
    from napari_fast_style.engine.optimize import _level_sizes, auto_levels

    assert [auto_levels(n) for n in (256, 512, 1024, 1500, 2048, 4096)] == [1, 1, 1, 2, 2, 3]
    assert _level_sizes(512, 512, 512, None) == [(512, 512)]
    assert _level_sizes(1000, 2000, 2048, None) == [(512, 1024), (1024, 2048)]
    assert OptimizeConfig().levels is None


def test_coarse_to_fine_and_size(vgg, images):
    content, s1, _ = images
    res = run_sync(optimize_iter(content, s1, cfg(size=48, levels=2, coarse_iterations=3, iterations=3), network=vgg))
    assert res.data.shape == (48, 48, 3)
    assert [h["size"] for h in res.history][0] == [24, 24] and res.history[-1]["size"] == [48, 48]


def test_stop_during_coarse_level_still_gives_requested_size(vgg, images):
    content, s1, _ = images
    token = CancelToken()
    res = run_sync(optimize_iter(content, s1, cfg(size=64, levels=2, coarse_iterations=50, iterations=50),
                                 network=vgg, cancel=token), lambda p: p.step == 2 and token.cancel())
    assert res.cancelled and res.data.shape == (64, 64, 3)


def test_converged_levels_end_early(vgg, images):
    content, s1, _ = images
    res = run_sync(optimize_iter(content, s1, cfg(iterations=200, tolerance=0.05, patience=3), network=vgg))
    assert 3 < res.iterations < 200 and not res.cancelled


def test_time_limit_ends_the_run_with_its_best_image(vgg, images):
    content, s1, _ = images
    # the limit: twice what the same two-level run takes with one iteration a level (its set-up included, which
    # on a loaded machine can outlast a single iteration), so it ends after a handful of iterations whatever this
    # machine's speed, and still delivers the requested size
    shape = dict(size=64, levels=2)
    two = run_sync(optimize_iter(content, s1, cfg(**shape, coarse_iterations=1, iterations=1), network=vgg))
    res = run_sync(optimize_iter(content, s1, cfg(**shape, coarse_iterations=500, iterations=500,
                                                  time_limit=2 * two.history[-1]["seconds"]), network=vgg))
    assert 1 <= res.iterations < 500 and not res.cancelled
    assert res.metadata["napari_fast_style"]["time_limit_reached"]
    assert res.data.shape == (64, 64, 3)
    with pytest.raises(ValueError, match="time_limit"):
        OptimizeConfig(time_limit=0)


def test_cancel_returns_best_image(vgg, images):
    content, s1, _ = images
    token = CancelToken()

    def stop(p):
        if p.step == 3:
            token.cancel()

    res = run_sync(optimize_iter(content, s1, cfg(iterations=100), network=vgg, cancel=token), stop)
    assert res.cancelled and res.iterations == 3
    assert res.data.shape == (64, 64, 3)
    assert res.losses["total"] == min(h["total"] for h in res.history)


def test_tile_boxes_cover_with_overlap():
    from napari_fast_style.engine.optimize import tile_boxes, tile_overlap

    for h, w, t in ((100, 130, 64), (2048, 3000, 1024), (50, 40, 64)):
        boxes = tile_boxes(h, w, t)
        cover = np.zeros((h, w), int)
        for y0, y1, x0, x1 in boxes:
            assert 0 < y1 - y0 <= t and 0 < x1 - x0 <= t
            cover[y0:y1, x0:x1] += 1
        assert cover.min() >= 1
        ys = sorted({b[0] for b in boxes})
        ends = sorted({b[1] for b in boxes})
        assert all(e - s >= tile_overlap(t) for s, e in zip(ys[1:], ends[:-1]))  # neighbours overlap
    assert tile_boxes(50, 40, 64) == [(0, 50, 0, 40)]


def test_style_grams_in_pieces_match_the_whole_image(vgg):
    from skimage import data

    from napari_fast_style.engine.optimize import style_grams

    img = torch.from_numpy(np.ascontiguousarray(data.astronaut().transpose(2, 0, 1)))[None].float() / 255
    layers = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
    with torch.no_grad():
        whole = style_grams(img, layers, vgg)
        pieces = style_grams(img, layers, vgg, tile=128)  # 512x512 -> 16 pieces with context
    for name in layers:
        rel = float((pieces[name] - whole[name]).norm() / whole[name].norm())
        assert rel < 1e-3, (name, rel)  # the context covers (nearly) the whole receptive field


def test_tiled_final_level_optimises_every_tile(vgg, images):
    """A level larger than the tile is optimised tile by tile: full size, every tile counted, the
    style gap falls everywhere (each tile matched to the global style), and Stop mid-way still gives the
    full-size image."""
    from PIL import Image

    content, s1, _ = images
    big = np.asarray(Image.fromarray(content).resize((128, 96)))
    progress = []
    config = cfg(size=128, levels=2, coarse_iterations=3, iterations=6, tile=64, preview_every=3)
    res = run_sync(optimize_iter(big, s1, config, network=vgg), progress.append)
    meta = res.metadata["napari_fast_style"]
    assert res.data.shape == (96, 128, 3) and meta["tiles"] == [1, 6]  # the 64x48 level fits one tile
    assert progress[-1].total == 3 + 6 * 6 and "tile 6/6" in progress[-1].message
    assert {h["tile"] for h in res.history if "tile" in h} == set(range(6))
    assert progress[-1].preview.shape == (96, 128, 3)
    untouched = optimize(big, s1, size=128, levels=2, coarse_iterations=3, iterations=0, tile=64, device="cpu",
                         precision="fp32", network=vgg, tolerance=0)  # the upsampled coarse level alone
    for sl in (np.s_[:48, :64], np.s_[48:, 64:]):  # opposite corners: each improved by its own tile
        assert style_dist(vgg, res.data[sl], s1) < style_dist(vgg, untouched[sl], s1)
    token = CancelToken()
    stopped = run_sync(optimize_iter(big, s1, config, network=vgg, cancel=token),
                       lambda p: token.cancel() if "tile 2/6" in p.message else None)
    assert stopped.cancelled and stopped.data.shape == (96, 128, 3)


def test_adam_noise_init_and_float_grey(vgg, images):
    content, s1, _ = images
    grey = content[..., 0].astype(np.float32) / 255
    out = optimize(grey, s1, iterations=5, size=64, levels=1, optimizer="adam", init="noise", device="cpu",
                   network=vgg)
    assert out.shape == (64, 64, 3) and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1


def test_bad_inputs(vgg, images, monkeypatch):
    from napari_fast_style.engine import ImageError, ModelError

    content, s1, _ = images
    with pytest.raises(ImageError, match="stack"):
        optimize(np.zeros((2, 32, 32), np.uint8), s1, network=vgg)
    with pytest.raises(ValueError, match="weights"):
        optimize(content, [(s1, -1.0)], network=vgg)
    monkeypatch.delenv("NAPARI_FAST_STYLE_VGG", raising=False)
    with pytest.raises(ModelError, match="VGG16 weights"):
        optimize(content, s1, iterations=1)
    with pytest.raises(ValueError, match="optimizer"):
        OptimizeConfig(optimizer="sgd")


def test_cli_optimize(tmp_path, vgg_path, images):

    from PIL import Image

    from napari_fast_style.cli import main

    content, s1, s2 = images
    for name, arr in (("c.png", content), ("s1.png", s1), ("s2.png", s2)):
        Image.fromarray(arr).save(tmp_path / name)
    out = tmp_path / "o.png"
    code = main(["optimize", str(tmp_path / "c.png"), f"{tmp_path / 's1.png'}:0.7", f"{tmp_path / 's2.png'}:0.3",
                 "-o", str(out), "--iterations", "3", "--size", "48", "--levels", "1", "--vgg", str(vgg_path),
                 "--device", "cpu"])
    assert code == 0 and np.asarray(Image.open(out)).shape == (48, 48, 3)
    assert main(["optimize", str(tmp_path / "missing.png"), str(tmp_path / "s1.png"), "-o", str(out)]) == 2
    assert main(["optimize", str(tmp_path / "c.png"), str(tmp_path / "s1.png"), "-o", str(tmp_path / "x.png"),
                 "--vgg", str(tmp_path / "nope.pth")]) == 2
    assert main(["optimize", str(tmp_path / "c.png"), str(tmp_path / "s1.png"), "-o", str(tmp_path / "x.png"),
                 "--vgg", str(vgg_path), "--time-limit", "0"]) == 2
    assert main(["optimize", str(tmp_path / "c.png"), str(tmp_path / "s1.png"), "-o", str(tmp_path / "x.png"),
                 "--vgg", str(vgg_path), "--tile", "8"]) == 2
    assert not (tmp_path / "x.png").exists()
    code = main(["optimize", str(tmp_path / "c.png"), str(tmp_path / "s1.png"), "-o", str(out), "--iterations", "1",
                 "--size", "48", "--levels", "1", "--tile", "32", "--vgg", str(vgg_path), "--device", "cpu", "--json"])
    assert code == 0 and np.asarray(Image.open(out)).shape == (48, 48, 3)


@pytest.mark.parametrize("name", ["vgg19", "alexnet", "googlenet", "resnet50"])
def test_other_loss_networks_load_and_optimise(name, tmp_path, images):
    """Layouts are torchvision's (random weights saved in that layout here; nothing is downloaded)."""
    from napari_fast_style.engine import ModelError, load_loss_network
    from src_models.loss_networks import build_loss_network, get_loss_network_spec

    spec = get_loss_network_spec(name)
    torch.manual_seed(0)
    src = build_loss_network(name, spec.taps[: len(spec.taps)])
    state = {**src.state_dict(), f"{spec.ignore_prefixes[0]}weight": torch.zeros(2)}  # a full checkpoint
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    net = load_loss_network(name, path)
    assert set(net.taps if hasattr(net, "taps") else spec.default_taps) >= set(spec.default_taps)
    content, s1, _ = images
    res = run_sync(optimize_iter(content, s1, cfg(iterations=2, network=name), network=net))
    assert res.data.shape == (64, 64, 3) and np.isfinite(res.history[-1]["total"])
    with pytest.raises(ModelError, match="download"):
        load_loss_network(name, "torchvision")
