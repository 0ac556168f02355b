"""Model store: safetensors metadata, pytorch/examples import, clear errors for foreign files."""
import json
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from napari_fast_style.engine import (ModelError, find_model, import_checkpoint, list_models, load_model,
                                      read_metadata, save_model, stylize)
from src_models import transformer_net

from .conftest import random_style_net


def test_safetensors_metadata_round_trip(tmp_path):
    net = random_style_net("fast", n_styles=2)
    p = save_model(net, tmp_path / "two.safetensors", kind="style", arch="fast", display_name="Two styles",
                   styles=("a", "b"), recipe={"steps": 3, "lr": 1e-3}, half=True)
    meta = read_metadata(p)
    assert meta["kind"] == "style" and meta["arch"] == "fast" and meta["styles"] == ["a", "b"]
    assert meta["recipe"] == {"steps": 3, "lr": 1e-3}
    assert meta["arch_args"]["n_styles"] == 2 and meta["package_version"]
    loaded, entry = load_model(p)
    assert entry.display_name == "Two styles" and entry.styles == ("a", "b")
    for (k, a), (k2, b) in zip(net.state_dict().items(), loaded.state_dict().items()):
        assert k == k2
        torch.testing.assert_close(b, a.half().float())  # stored as fp16
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temp file


def pytorch_examples_state_dict(seed=0):
    """A state dict exactly as pytorch/examples fast_neural_style saves it, stale running stats included."""
    torch.manual_seed(seed)
    net = transformer_net("classic", out_scale=1.0)
    state = dict(net.state_dict())
    for m in ["in1", "in2", "in3", "in4", "in5"] + [f"res{i}.in{j}" for i in range(1, 6) for j in (1, 2)]:
        c = state[f"{m}.weight"].shape[0]
        state[f"{m}.running_mean"] = torch.randn(c)
        state[f"{m}.running_var"] = torch.rand(c)
    return net, state


@pytest.mark.parametrize("suffix", [".pth", ".model"])
def test_pytorch_examples_checkpoint_round_trip(tmp_path, suffix, user_models):
    net, state = pytorch_examples_state_dict()
    src = tmp_path / f"mosaic{suffix}"
    torch.save(state, src)
    entry = import_checkpoint(src)
    assert entry.name == "mosaic" and entry.arch == "classic" and entry.path.parent == user_models
    assert "mosaic" in [e.name for e in list_models("style")]
    img = (np.random.default_rng(0).random((40, 52, 3)) * 255).astype(np.uint8)
    with torch.inference_mode():
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
        x = torch.nn.functional.pad(x, (0, 0, 0, 0))
        ref = net.eval()(torch.nn.functional.pad(x, (0, 4, 0, 0), mode="reflect"))[..., :40, :52]
    out = stylize(img, "mosaic", device="cpu", precision="fp32")
    expect = np.rint(np.clip(ref[0].permute(1, 2, 0).numpy(), 0, 255)).astype(np.uint8)
    assert np.abs(out.astype(int) - expect.astype(int)).max() <= 1
    with pytest.raises(ModelError, match="exists already"):
        import_checkpoint(src)


def test_import_refuses_code_and_foreign_files(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump(Evil(), f)
    with pytest.raises(ModelError, match="not a loadable"):
        import_checkpoint(evil)
    text = tmp_path / "notes.model"
    text.write_text("hello")
    with pytest.raises(ModelError):
        import_checkpoint(text)
    other = tmp_path / "resnet.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(ModelError, match="not a fast_neural_style"):
        import_checkpoint(other)
    listy = tmp_path / "list.pth"
    torch.save([1, 2, 3], listy)
    with pytest.raises(ModelError, match="state dict"):
        import_checkpoint(listy)
    with pytest.raises(ModelError, match="not found"):
        import_checkpoint(tmp_path / "missing.pth")


def test_corrupt_and_foreign_safetensors(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 7)
    with pytest.raises(ModelError, match="not a napari-fast-style model"):
        load_model(junk)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(foreign))
    with pytest.raises(ModelError, match="no metadata"):
        load_model(foreign)
    wrong = tmp_path / "wrong.safetensors"
    save_file({"w": torch.zeros(3)}, str(wrong), metadata={"napari_fast_style": json.dumps(
        {"kind": "style", "arch": "fast", "arch_args": {}})})
    with pytest.raises(ModelError, match="do not match"):
        load_model(wrong)
    truncated = tmp_path / "trunc.safetensors"
    good = save_model(random_style_net(), tmp_path / "good.safetensors", kind="style", arch="fast",
                      display_name="g")
    truncated.write_bytes(good.read_bytes()[:-1000])
    with pytest.raises(ModelError):
        load_model(truncated)
    with pytest.raises(ModelError, match="unknown model"):
        find_model("no-such-style")


def test_unknown_model_message_lists_only_models_of_the_asked_kind():
    with pytest.raises(ModelError, match="unknown style model") as style_err:
        find_model("no-such-style", kind="style")
    assert "starry_night-fast" in str(style_err.value) and "sr_x4" not in str(style_err.value)
    with pytest.raises(ModelError, match="unknown sr model") as sr_err:
        find_model("no-such-sr", kind="sr")
    assert "sr_x4-fidelity" in str(sr_err.value) and "starry_night" not in str(sr_err.value)


def test_user_dir_listing_skips_broken_files(user_models):
    user_models.mkdir(parents=True, exist_ok=True)
    (user_models / "broken.safetensors").write_bytes(b"garbage!")
    names = [e.name for e in list_models()]
    assert "broken" not in names


def test_bundled_models_are_listed_and_load():
    bundled = [e for e in list_models("style") if e.source == "bundled"]
    assert bundled, "at least one bundled style model"
    for e in bundled:
        assert e.kind == "style" and e.arch in ("fast", "classic") and e.path.suffix == ".safetensors"
        assert e.metadata["recipe"], "bundled models carry their training recipe"
        net, _ = load_model(e.name)
        assert sum(p.numel() for p in net.parameters()) > 0


def test_every_bundled_style_changes_a_photo_and_the_default_is_bundled():
    from skimage import data

    from napari_fast_style.engine import stylize
    from napari_fast_style.engine.models import DEFAULT_STYLE

    names = sorted(e.name for e in list_models("style") if e.source == "bundled")
    assert DEFAULT_STYLE in names
    photo = data.astronaut()[::8, ::8]  # 64x64
    outs = {}
    for name in names:
        out = stylize(photo, name, device="cpu")
        assert out.shape == photo.shape and out.dtype == np.uint8
        assert np.abs(out.astype(float) - photo).mean() > 8, name  # a style visibly applied
        outs[name] = out.astype(float)
    for a, b in zip(names, names[1:]):
        assert np.abs(outs[a] - outs[b]).mean() > 4, (a, b)  # each style is its own


def test_bundled_manifest_matches_files():
    import hashlib

    from src_models import WEIGHTS_DIR

    manifest = json.loads((WEIGHTS_DIR / "MANIFEST.json").read_text())
    files = {p.name for p in WEIGHTS_DIR.glob("*.safetensors")}
    assert files == set(manifest["models"])
    for name, info in manifest["models"].items():
        assert hashlib.sha256((WEIGHTS_DIR / name).read_bytes()).hexdigest() == info["sha256"]
        assert info["provenance"]
