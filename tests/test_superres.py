"""Super-resolution: the network, inference on every layer kind, exact tiling, intensity fidelity,
model resolution, cancellation, training (fidelity and perceptual) and the command line."""
import json

import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as F
from PIL import Image

from napari_fast_style.cli import main
from napari_fast_style.engine import (CancelToken, LoopConfig, ModelError, SRConfig, SRTrainConfig, evaluate_sr,
                                      load_model, read_metadata, run_sync, save_model, super_resolve,
                                      super_resolve_iter, train_sr_iter)
from src_models import SRNet, sr_net

from .test_loss_networks import one_thread  # noqa: F401 - autouse: tiny tensors run faster on one thread


def make_sr_net(scale=4, seed=0, random=True, channels=8, n_res=1):
    """A small SRNet; ``random``: every weight perturbed, so the learned path matters (an untrained net
    is exactly bicubic upsampling because its last convolution starts at zero)."""
    torch.manual_seed(seed)
    net = SRNet(scale, channels=channels, n_res=n_res)
    if random:
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p) * 0.05)
    return net.eval()


def save_sr(net, path, variant="fidelity"):
    return save_model(net, path, kind="sr", arch="srnet", display_name=f"test x{net.scale} {variant}", half=False,
                      extra={"scale": net.scale, "variant": variant, "value_range": 1.0})


@pytest.fixture
def sr_model(tmp_path):
    """Factory: save a small SR model file and return its path."""

    def make(scale=4, variant="fidelity", random=True, name=None, folder=None):
        path = (folder or tmp_path) / f"{name or f'sr{scale}-{variant}-{int(random)}'}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        return save_sr(make_sr_net(scale, random=random), path, variant)

    return make


# ----------------------------------------------------------------------------- network
def test_srnet_starts_as_bicubic_and_rebuilds_from_metadata(tmp_path):
    net = SRNet(8, channels=16, n_res=2).eval()
    x = torch.rand(2, 3, 11, 13)
    with torch.no_grad():
        y = net(x)
    assert y.shape == (2, 3, 88, 104) and net.scale == 8
    torch.testing.assert_close(y, F.interpolate(x, scale_factor=8, mode="bicubic", align_corners=False))
    assert net.config["up_channels"] == (16, 16, 16)
    path = save_sr(net, tmp_path / "x8.safetensors")
    meta = read_metadata(path)
    assert meta["kind"] == "sr" and meta["arch"] == "srnet" and meta["scale"] == 8 and meta["value_range"] == 1.0
    loaded, entry = load_model(path, kind="sr")
    assert isinstance(loaded, SRNet) and loaded.config == net.config
    with pytest.raises(ValueError, match="scale"):
        SRNet(3)


def test_receptive_radius_bounds_the_influence_of_a_pixel():
    net = make_sr_net(4, channels=8, n_res=2).double()
    x = torch.rand(1, 3, 41, 41, dtype=torch.float64)
    x2 = x.clone()
    x2[..., 20, 20] += 1.0
    with torch.no_grad():
        d = (net(x2) - net(x)).abs().amax(dim=(0, 1))
    rows = torch.nonzero(d.amax(dim=1) > 0).flatten()
    reach = max(20 * 4 - int(rows.min()), int(rows.max()) - (21 * 4 - 1)) / 4  # in LR pixels
    assert 0 < reach <= net.receptive_radius


# ----------------------------------------------------------------------------- inference
LAYOUTS = [  # label, image factory, plane, rgb
    ("grey float", lambda r: r.random((20, 24)), None, False),
    ("grey uint16", lambda r: (r.random((20, 24)) * 4000).astype(np.uint16), None, False),
    ("rgb uint8", lambda r: (r.random((20, 24, 3)) * 255).astype(np.uint8), None, True),
    ("rgba uint8", lambda r: (r.random((20, 24, 4)) * 255).astype(np.uint8), None, True),
    ("rgba float", lambda r: r.random((20, 24, 4)).astype(np.float32), None, True),
    ("grey stack int16", lambda r: (r.random((3, 20, 24)) * 900 - 300).astype(np.int16), None, False),
    ("rgb stack uint8", lambda r: (r.random((2, 20, 24, 3)) * 255).astype(np.uint8), None, True),
    ("one plane", lambda r: (r.random((3, 20, 24)) * 4000).astype(np.uint16), (1,), False),
]


@pytest.mark.parametrize("label,make,plane,rgb", LAYOUTS, ids=[x[0] for x in LAYOUTS])
@pytest.mark.parametrize("variant", ["fidelity", "perceptual"])
def test_output_is_factor_times_larger_with_the_same_layout(label, make, plane, rgb, variant, sr_model, rng):
    img = make(rng)
    before = img.copy()
    res = run_sync(super_resolve_iter(img, sr_model(4, variant), SRConfig(device="cpu"), scale=4, plane=plane))
    spatial = img.shape[-3:-1] if rgb else img.shape[-2:]
    lead = () if plane is not None else (img.shape[:-3] if rgb else img.shape[:-2])
    assert res.data.shape == lead + (spatial[0] * 4, spatial[1] * 4) + ((img.shape[-1],) if rgb else ())
    if variant == "fidelity":
        assert res.data.dtype == img.dtype  # intensities stay in the input's dtype and units
    else:
        assert res.data.dtype == (np.uint8 if img.dtype == np.uint8 else np.float32)
    meta = res.metadata["napari_fast_style"]
    assert meta["scale"] == 4 and meta["variant"] == variant and meta["operation"] == "superres"
    assert not res.cancelled and res.planes_done == res.planes_total
    np.testing.assert_array_equal(img, before)  # the input is never modified


def test_tiled_equals_untiled(sr_model, rng):
    model = sr_model(4)
    for img in (rng.random((70, 90, 3)).astype(np.float32), (rng.random((61, 47)) * 60000).astype(np.uint16)):
        whole = super_resolve(img, 4, model, device="cpu")
        res = run_sync(super_resolve_iter(img, model, SRConfig(tile=32, device="cpu"), scale=4))
        assert res.metadata["napari_fast_style"]["tiles"] > 1
        diff = np.abs(res.data.astype(np.float64) - whole.astype(np.float64)).max()
        assert diff <= (1e-5 if img.dtype.kind == "f" else 1)  # float rounding; integers: at most 1 unit


def test_fidelity_keeps_the_uint16_value_scale_and_float_units(sr_model):
    model = sr_model(4, random=False)  # an untrained net: exactly bicubic, a meaningful intensity baseline
    ramp = np.tile(np.linspace(1000, 3000, 48), (40, 1)).astype(np.uint16)
    out = super_resolve(ramp, 4, model, device="cpu")
    assert out.dtype == np.uint16 and out.shape == (160, 192)
    assert 1000 <= out.min() and out.max() <= 3000
    assert abs(float(out.mean()) - float(ramp.mean())) < 0.005 * float(ramp.mean())
    assert np.all(np.diff(out[:, 8:-8].astype(int), axis=1) >= 0)  # still a monotonic ramp
    units = ramp.astype(np.float64) / 100.0 - 25.0  # e.g. temperatures in deg C: -15 .. 5
    out_f = super_resolve(units, 4, model, device="cpu")
    assert out_f.dtype == np.float64 and -15.0 - 1e-6 <= out_f.min() and out_f.max() <= 5.0 + 1e-6
    assert abs(out_f.mean() - units.mean()) < 0.05


def test_alpha_is_carried_and_grey_stays_grey(sr_model, rng):
    model = sr_model(4, random=False)
    rgba = (rng.random((16, 20, 4)) * 255).astype(np.uint8)
    rgba[..., 3] = 200
    out = super_resolve(rgba, 4, model, device="cpu")
    assert out.shape == (64, 80, 4) and np.all(out[..., 3] == 200)
    grey = (rng.random((16, 20)) * 255).astype(np.uint8)
    g = super_resolve(grey, 4, model, device="cpu")
    rgb = super_resolve(np.repeat(grey[..., None], 3, axis=-1), 4, model, device="cpu")
    assert g.shape == (64, 80) and np.abs(g.astype(int) - rgb[..., 0].astype(int)).max() <= 1


def test_cancel_keeps_finished_planes_and_shows_the_input_elsewhere(sr_model, rng):
    stack = (rng.random((3, 20, 24)) * 4000).astype(np.uint16)
    token = CancelToken()
    gen = super_resolve_iter(stack, sr_model(4), SRConfig(device="cpu"), scale=4, cancel=token)
    next(gen)  # the first plane is one tile
    token.cancel()
    res = run_sync(gen)
    assert res.cancelled and res.planes_done == 1 and res.metadata["napari_fast_style"]["cancelled"]
    np.testing.assert_array_equal(res.data[2], np.repeat(np.repeat(stack[2], 4, axis=0), 4, axis=1))


def test_variant_names_resolve_to_bundled_models_only(sr_model, tmp_path, monkeypatch, user_models):
    bundled = tmp_path / "bundled"
    sr_model(4, "fidelity", name="sr_x4-fidelity", folder=bundled)
    sr_model(4, "perceptual", name="my-perceptual", folder=user_models)  # a user model is no bundled variant
    monkeypatch.setattr("napari_fast_style.engine.models.bundled_model_dir", lambda: bundled)
    img = np.zeros((16, 16), np.uint8)
    res = run_sync(super_resolve_iter(img, "fidelity", SRConfig(device="cpu"), scale=4))
    assert res.metadata["napari_fast_style"]["model"] == "sr_x4-fidelity"
    with pytest.raises(ModelError, match="no bundled x4 perceptual"):
        super_resolve(img, 4, "perceptual")
    with pytest.raises(ModelError, match="no bundled x8 fidelity"):
        super_resolve(img, 8, "fidelity")
    assert super_resolve(img, 4, "my-perceptual", device="cpu").shape == (64, 64)
    with pytest.raises(ModelError, match="x4 super-resolution model; x8 was requested"):
        super_resolve(img, 8, "my-perceptual")


@pytest.mark.parametrize("scale", [4, 8])
@pytest.mark.parametrize("variant", ["fidelity", "perceptual"])
def test_every_bundled_variant_loads_and_beats_nearest_neighbour(scale, variant):
    """The shipped weights themselves (no monkeypatching): each factor x variant resolves, keeps the
    layout, and is closer to the original than pixel replication is."""
    from skimage import data

    hr = data.astronaut()[:128, 128:256]
    lr = np.asarray(Image.fromarray(hr).resize((128 // scale, 128 // scale), Image.BICUBIC))
    res = run_sync(super_resolve_iter(lr, variant, SRConfig(device="cpu"), scale=scale))
    meta = res.metadata["napari_fast_style"]
    assert meta["model"] == f"sr_x{scale}-{variant}"
    out = res.data
    assert out.shape == hr.shape and out.dtype == np.uint8
    nearest = np.repeat(np.repeat(lr, scale, 0), scale, 1)
    err = lambda a: float(np.abs(a.astype(float) - hr).mean())  # noqa: E731
    assert err(out) < err(nearest)


# ----------------------------------------------------------------------------- training
def _photos():
    from skimage import data

    return [data.astronaut(), data.coffee(), data.chelsea()]


def test_fidelity_training_beats_its_start_on_heldout_crops(tmp_path):
    from skimage import data

    from napari_fast_style.engine.data import ContentSet

    held = ContentSet([data.rocket()], 256).batch(8, 64, torch.Generator().manual_seed(1), (1.0, 1.0))
    cfg = SRTrainConfig(scale=4, loss="fidelity", net="light", size=48, batch_size=8, pixel_loss="l2",
                        loop=LoopConfig(steps=120, lr=5e-4, device="cpu", precision="fp32", checkpoint_every=0,
                                        preview_every=60))
    start = evaluate_sr(sr_net(cfg.net, 4), held)  # step 0: any untrained SRNet is bicubic upsampling
    previews = []
    res = run_sync(train_sr_iter(tmp_path / "x4.safetensors", content=ContentSet(_photos(), 256), config=cfg),
                   lambda p: previews.append(p.preview) if p.preview is not None else None)
    assert res.steps == 120 and not res.cancelled and len(previews) == 2
    end = evaluate_sr(load_model(res.path, kind="sr")[0], held)
    # the validation loss (the training loss, MSE, as PSNR) on a photo never trained on: bicubic is a
    # strong start, and 120 small steps beat it (+0.13-0.16 dB over 3 seeds)
    assert end["psnr_net"] > start["psnr_net"] + 0.05
    assert start["psnr_net"] == pytest.approx(start["psnr_bicubic"], abs=1e-4)
    meta = read_metadata(res.path)
    assert meta["variant"] == "fidelity" and meta["scale"] == 4 and meta["recipe"]["steps"] == 120
    # fine-tuning starts from the trained model (one step at a negligible learning rate changes nothing)
    cont = SRTrainConfig(**{**cfg.__dict__, "loop": LoopConfig(steps=1, lr=1e-12, device="cpu", precision="fp32",
                                                                checkpoint_every=0, preview_every=0)})
    res2 = run_sync(train_sr_iter(tmp_path / "x4b.safetensors", content=ContentSet(_photos(), 256), config=cont,
                                  init_from=res.path))
    again = evaluate_sr(load_model(res2.path, kind="sr")[0], held)
    assert again["psnr_net"] == pytest.approx(end["psnr_net"], abs=0.02)  # fp16 storage
    assert read_metadata(res2.path)["recipe"]["init_from"] == "x4.safetensors"
    wrong = SRTrainConfig(scale=8, loss="fidelity", net="light", size=48, loop=cont.loop)
    with pytest.raises(ModelError, match="not an x8"):
        run_sync(train_sr_iter(tmp_path / "x8.safetensors", content=ContentSet(_photos(), 256), config=wrong,
                               init_from=res.path))


def test_perceptual_training_runs_with_the_real_vgg(tmp_path, vgg):
    from napari_fast_style.engine.data import ContentSet

    cfg = SRTrainConfig(scale=8, loss="perceptual", net="light", size=32, batch_size=2,
                        loop=LoopConfig(steps=3, device="cpu", precision="fp32", checkpoint_every=0, preview_every=0))
    res = run_sync(train_sr_iter(tmp_path / "x8p.safetensors", content=ContentSet(_photos(), 128), config=cfg,
                                 vgg=vgg))
    assert res.steps == 3 and {"feature", "pixel", "tv", "total"} <= set(res.history[-1])
    assert all(np.isfinite(h["total"]) and h["feature"] > 0 for h in res.history)
    meta = read_metadata(res.path)
    assert meta["variant"] == "perceptual" and meta["scale"] == 8 and meta["recipe"]["vgg"] == "caffe"
    out = super_resolve((np.random.default_rng(0).random((12, 10)) * 255).astype(np.uint8), 8, res.path, device="cpu")
    assert out.shape == (96, 80) and out.dtype == np.uint8


def test_train_config_is_validated():
    with pytest.raises(ValueError, match="multiple of the scale"):
        SRTrainConfig(scale=8, size=100)
    with pytest.raises(ValueError, match="loss"):
        SRTrainConfig(loss="adversarial")


# ----------------------------------------------------------------------------- command line
def cli(args, capsys):
    """Run the CLI in-process: (exit code, stdout, last stderr line)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # argparse errors
        code = e.code
    out, err = capsys.readouterr()
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    return code, out, lines[-1] if lines else ""


def test_cli_superres_png_and_uint16_tiff(tmp_path, sr_model, capsys):
    model = sr_model(4)
    png = tmp_path / "a.png"
    Image.fromarray((np.random.default_rng(0).random((20, 30, 3)) * 255).astype(np.uint8)).save(png)
    code, out, err = cli(["superres", png, "-o", tmp_path / "a4.png", "--scale", 4, "-m", model, "--tile", 16,
                          "--device", "cpu", "--json"], capsys)
    assert code == 0, err
    rep = json.loads(out)
    assert rep["shape"] == [80, 120, 3] and rep["variant"] == "fidelity"
    assert np.asarray(Image.open(tmp_path / "a4.png")).shape == (80, 120, 3)
    tif = tmp_path / "s.tif"
    stack = (np.random.default_rng(1).random((2, 20, 30)) * 4000 + 1000).astype(np.uint16)
    tifffile.imwrite(tif, stack)
    code, out, err = cli(["superres", tif, "-o", tmp_path / "s4.tif", "-m", model, "--device", "cpu"], capsys)
    assert code == 0, err
    res = tifffile.imread(tmp_path / "s4.tif")
    assert res.shape == (2, 80, 120) and res.dtype == np.uint16 and res.min() >= stack.min()


def test_cli_train_sr(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, a in enumerate(_photos()[:2]):
        Image.fromarray(a[::4, ::4]).save(photos / f"p{i}.png")
    out = tmp_path / "mine.safetensors"
    code, rep, err = cli(["train-sr", "--scale", 4, "--loss", "fidelity", "-o", out, "--content", photos, "--steps", 2,
                          "--size", 32, "--net", "light", "--device", "cpu", "--json"], capsys)
    assert code == 0, err
    assert json.loads(rep)["steps"] == 2 and read_metadata(out)["kind"] == "sr"


@pytest.mark.parametrize("args,msg", [
    (["superres", "missing.png", "-o", "x.png"], "no such file"),
    (["superres", "IMG", "-o", "x.png", "--scale", "3"], "invalid choice"),
    (["superres", "IMG", "-o", "x.png", "-m", "sharpest"], "unknown sr model"),
    (["superres", "IMG", "-o", "x.png", "-m", "missing.safetensors"], "model file not found"),
    (["superres", "IMG16", "-o", "x.png", "-m", "MODEL"], "write a .tif"),
    (["superres", "IMG", "-o", "x.png", "-m", "MODEL", "--scale", "8"], "x8 was requested"),
    (["superres", "IMG", "-o", "x.png", "-m", "MODEL", "--tile", "8"], "tile"),
    (["superres", "IMG"], "-o"),
    (["train-sr", "-o", "m.safetensors", "--scale", "8", "--size", "100"], "multiple of the scale"),
    (["train-sr", "-o", "m.pth"], ".safetensors"),
    (["train-sr", "-o", "m.safetensors", "--loss", "perceptual", "--vgg", "no-vgg.pth"], "VGG16"),
    (["train-sr", "-o", "m.safetensors", "--content", "no-such-dir"], "not found"),
])
def test_cli_errors_exit_2_with_one_clear_line(args, msg, tmp_path, sr_model, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "img.png")
    tifffile.imwrite(tmp_path / "img16.tif", np.zeros((20, 20), np.uint16))
    subst = {"IMG": "img.png", "IMG16": "img16.tif", "MODEL": str(sr_model(4))}
    code, _, err = cli([subst.get(a, a) for a in args], capsys)
    assert code == 2
    assert msg in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists() and not list(tmp_path.glob("m.*"))
