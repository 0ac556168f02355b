"""Loss-network registry: taps, shapes, frozen params, eval-mode BN and torchvision state-dict layouts.

Random weights only, 64x64 inputs, no network access. The expected state-dict key sets are written
down from torchvision's architecture definitions, independently of the implementation.
"""
import pytest
import torch
import torch.nn as nn

from src_models import (LOSS_NETWORKS, VGG16_TAPS, VGG19_TAPS, LossNetworkSpec, VGGFeatures,
                        build_loss_network, strip_prefixes, vgg19_features)

SIZE = 64

# ---------------------------------------------------------------- expected torchvision layouts
BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _conv_keys(indices):
    return {f"features.{i}.{p}" for i in indices for p in ("weight", "bias")}


def _basic_conv(prefix):  # googlenet BasicConv2d: conv (no bias) + bn
    return {f"{prefix}.conv.weight"} | {f"{prefix}.bn.{p}" for p in BN}


def _googlenet_keys():
    keys = set()
    for stem in ("conv1", "conv2", "conv3"):
        keys |= _basic_conv(stem)
    for block in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"):
        for branch in ("branch1", "branch2.0", "branch2.1", "branch3.0", "branch3.1", "branch4.1"):
            keys |= _basic_conv(f"inception{block}.{branch}")
    return keys


def _resnet50_keys():
    keys = {"conv1.weight"} | {f"bn1.{p}" for p in BN}
    for layer, blocks in zip((1, 2, 3, 4), (3, 4, 6, 3)):
        for b in range(blocks):
            pre = f"layer{layer}.{b}"
            for i in (1, 2, 3):
                keys |= {f"{pre}.conv{i}.weight"} | {f"{pre}.bn{i}.{p}" for p in BN}
            if b == 0:  # every stage's first block projects (layer1: 64 -> 256 channels)
                keys |= {f"{pre}.downsample.0.weight"} | {f"{pre}.downsample.1.{p}" for p in BN}
    return keys


VGG16_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
VGG19_CONVS = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
ALEXNET_CONVS = (0, 3, 6, 8, 10)

EXPECTED_KEYS = {
    "vgg16": _conv_keys(VGG16_CONVS),
    "vgg19": _conv_keys(VGG19_CONVS),
    "alexnet": _conv_keys(ALEXNET_CONVS),
    "googlenet": _googlenet_keys(),
    "resnet50": _resnet50_keys(),
}
EXPECTED_COUNTS = {"vgg16": 26, "vgg19": 32, "alexnet": 10, "googlenet": 342, "resnet50": 318}

# extra (classifier / aux) entries of a full torchvision checkpoint, with their shapes
_AUX = lambda a, c: {f"{a}.conv.conv.weight": (128, c, 1, 1), **{f"{a}.conv.bn.{p}": (128,) for p in BN[:4]},  # noqa: E731
                     f"{a}.conv.bn.num_batches_tracked": (), f"{a}.fc1.weight": (1024, 2048),
                     f"{a}.fc1.bias": (1024,), f"{a}.fc2.weight": (1000, 1024), f"{a}.fc2.bias": (1000,)}
_VGG_CLS = {"classifier.0.weight": (4096, 25088), "classifier.0.bias": (4096,), "classifier.3.weight": (4096, 4096),
            "classifier.3.bias": (4096,), "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,)}
CLASSIFIER = {
    "vgg16": _VGG_CLS,
    "vgg19": _VGG_CLS,
    "alexnet": {"classifier.1.weight": (4096, 9216), "classifier.1.bias": (4096,), "classifier.4.weight": (4096, 4096),
                "classifier.4.bias": (4096,), "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,)},
    "googlenet": {"fc.weight": (1000, 1024), "fc.bias": (1000,), **_AUX("aux1", 512), **_AUX("aux2", 528)},
    "resnet50": {"fc.weight": (1000, 2048), "fc.bias": (1000,)},
}

_VGG_CH = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}


def _vgg_shapes(taps):
    return {t: (_VGG_CH[int(t[4])], SIZE >> (int(t[4]) - 1)) for t in taps}


#: tap -> (channels, spatial size) for a SIZE x SIZE input
EXPECTED_SHAPES = {
    "vgg16": _vgg_shapes(VGG16_TAPS),
    "vgg19": _vgg_shapes(VGG19_TAPS),
    # conv1 11x11/4 pad 2: 64 -> 15; maxpool 3/2: 7; maxpool 3/2: 3
    "alexnet": {"relu1": (64, 15), "relu2": (192, 7), "relu3": (384, 3), "relu4": (256, 3), "relu5": (256, 3)},
    "googlenet": {"conv1": (64, 32), "conv2": (64, 16), "conv3": (192, 16), "inception3a": (256, 8),
                  "inception3b": (480, 8), "inception4a": (512, 4), "inception4b": (512, 4),
                  "inception4c": (512, 4), "inception4d": (528, 4), "inception4e": (832, 4),
                  "inception5a": (832, 2), "inception5b": (1024, 2)},
    "resnet50": {"relu": (64, 32), "layer1": (256, 16), "layer2": (512, 8), "layer3": (1024, 4),
                 "layer4": (2048, 2)},
}

NAMES = ["vgg16", "vgg19", "alexnet", "googlenet", "resnet50"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny inputs: one intra-op thread is faster and immune to a busy machine's thread contention."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def full_nets(one_thread):
    """Every network with all its taps (built once; random weights)."""
    torch.manual_seed(0)
    return {n: build_loss_network(n, LOSS_NETWORKS[n].taps) for n in NAMES}


@pytest.fixture(scope="module")
def x():
    return torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def _bns(net):
    return [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _check_outputs(name, net, out, taps):
    assert list(out) == [t for t in LOSS_NETWORKS[name].taps if t in set(taps)]  # forward order
    for t, v in out.items():
        c, s = EXPECTED_SHAPES[name][t]
        assert v.shape == (1, c, s, s), (name, t, v.shape)
        assert torch.isfinite(v).all() and (v >= 0).all()  # every tap is a ReLU output


# ---------------------------------------------------------------- registry
def test_registry_entries():
    assert set(LOSS_NETWORKS) == set(NAMES)
    for name, spec in LOSS_NETWORKS.items():
        assert isinstance(spec, LossNetworkSpec) and spec.name == name
        assert list(spec.taps) == list(EXPECTED_SHAPES[name])
        assert set(spec.style_layers) <= set(spec.taps) and spec.content_layer in spec.taps
        assert spec.torchvision_url.startswith("https://download.pytorch.org/models/")
        assert spec.torchvision_url.rsplit("/", 1)[1].startswith(name) and spec.torchvision_url.endswith(".pth")
        assert all(k.startswith(spec.ignore_prefixes) for k in CLASSIFIER[name])
        assert not any(k.startswith(spec.ignore_prefixes) for k in EXPECTED_KEYS[name])
        with pytest.raises(Exception):
            spec.name = "other"  # frozen
    assert LOSS_NETWORKS["vgg19"].style_layers == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    assert LOSS_NETWORKS["vgg19"].content_layer == "relu4_2"
    assert LOSS_NETWORKS["vgg19"].torchvision_url.endswith("vgg19-dcbb9e9d.pth")
    assert LOSS_NETWORKS["vgg16"].torchvision_url.endswith("vgg16-397923af.pth")
    assert LOSS_NETWORKS["alexnet"].torchvision_url.endswith("alexnet-owt-7be5be79.pth")
    assert LOSS_NETWORKS["googlenet"].torchvision_url.endswith("googlenet-1378be20.pth")
    assert LOSS_NETWORKS["resnet50"].torchvision_url.endswith("resnet50-0676ba61.pth")


def test_unknown_name_raises():
    with pytest.raises(ValueError, match="known.*alexnet.*googlenet.*resnet50.*vgg16.*vgg19"):
        build_loss_network("inception_v3")
    with pytest.raises(ValueError, match="unknown"):
        build_loss_network("resnet50", ("layer9",))
    with pytest.raises(ValueError, match="unknown"):
        build_loss_network("googlenet", ())


# ---------------------------------------------------------------- all taps
@pytest.mark.parametrize("name", NAMES)
def test_all_taps(name, full_nets, x):
    net = full_nets[name]
    assert not net.training
    assert not any(p.requires_grad for p in net.parameters())
    with torch.no_grad():
        out = net(x)
    _check_outputs(name, net, out, LOSS_NETWORKS[name].taps)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_layout(name, full_nets):
    sd = full_nets[name].state_dict()
    assert set(sd) == EXPECTED_KEYS[name]
    assert len(sd) == EXPECTED_COUNTS[name]
    assert not any("mean" == k.rsplit(".", 1)[-1] or k.startswith("preprocess") for k in sd)  # buffers non-persistent


def test_specific_keys(full_nets):
    assert full_nets["vgg19"].state_dict()["features.34.weight"].shape == (512, 512, 3, 3)
    assert full_nets["alexnet"].state_dict()["features.0.weight"].shape == (64, 3, 11, 11)
    g = full_nets["googlenet"].state_dict()
    assert g["inception4e.branch3.1.conv.weight"].shape == (128, 32, 3, 3)  # torchvision's 3x3 "5x5" branch
    assert g["conv1.conv.weight"].shape == (64, 3, 7, 7) and "conv1.conv.bias" not in g
    assert full_nets["googlenet"].conv1.bn.eps == 1e-3
    r = full_nets["resnet50"].state_dict()
    assert r["layer3.5.bn3.running_var"].shape == (1024,)
    assert r["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert r["layer2.0.conv2.weight"].shape == (128, 128, 3, 3)  # v1.5: stride on the 3x3
    assert full_nets["resnet50"].layer2[0].conv2.stride == (2, 2)
    assert full_nets["resnet50"].layer2[0].conv1.stride == (1, 1)


@pytest.mark.parametrize("name", NAMES)
def test_full_checkpoint_loads_strictly(name, full_nets):
    """A torchvision-style checkpoint (with classifier/aux keys) loads strictly after ignore_prefixes."""
    net = full_nets[name]
    ckpt = {k: torch.randn_like(v, dtype=torch.float32).to(v.dtype) if v.is_floating_point() else v + 7
            for k, v in net.state_dict().items()}
    ckpt.update({k: torch.zeros(s) for k, s in CLASSIFIER[name].items()})
    with pytest.raises(RuntimeError):
        net.load_state_dict(ckpt)  # strict loading refuses the classifier keys
    net.load_state_dict(strip_prefixes(ckpt, LOSS_NETWORKS[name].ignore_prefixes))
    for k, v in net.state_dict().items():
        assert torch.equal(v, ckpt[k]), k
    assert not any(p.requires_grad for p in net.parameters())  # still frozen after loading


# ---------------------------------------------------------------- default taps
@pytest.mark.parametrize("name", NAMES)
def test_default_taps(name, full_nets):
    spec = LOSS_NETWORKS[name]
    net = build_loss_network(name)  # taps=None: default style + content layers
    wanted = set(spec.style_layers) | {spec.content_layer}
    assert spec.default_taps == tuple(t for t in spec.taps if t in wanted)
    assert not any(p.requires_grad for p in net.parameters()) and not net.training
    x = torch.rand(1, 3, SIZE, SIZE, requires_grad=True)
    out = net(x)
    _check_outputs(name, net, out, wanted)
    sum(v.mean() for v in out.values()).backward()  # gradients reach the input
    assert x.grad is not None and x.grad.abs().sum() > 0
    # only the layers up to the deepest tap are built: a prefix of the full layout
    sd = net.state_dict()
    assert set(sd) <= EXPECTED_KEYS[name]
    missing, unexpected = net.load_state_dict(full_nets[name].state_dict(), strict=False)
    assert not missing
    deepest = max(spec.taps.index(t) for t in wanted)
    if deepest == len(spec.taps) - 1:
        assert not unexpected
    assert set(unexpected) == EXPECTED_KEYS[name] - set(sd)


def test_truncation():
    r = build_loss_network("resnet50", ("relu",))
    assert not hasattr(r, "layer1") and set(r.state_dict()) == {"conv1.weight"} | {f"bn1.{p}" for p in BN}
    assert list(r(torch.rand(1, 3, 32, 32))) == ["relu"]
    g = build_loss_network("googlenet", ("conv3", "conv1"))
    assert not hasattr(g, "inception3a")
    assert list(g(torch.rand(1, 3, 32, 32))) == ["conv1", "conv3"]
    a = build_loss_network("alexnet", ("relu2",))
    assert len(a.features) == 5


# ---------------------------------------------------------------- batch norm stays in eval mode
@pytest.mark.parametrize("name", ["googlenet", "resnet50"])
def test_train_keeps_batchnorm_in_eval(name, x):
    net = build_loss_network(name)
    assert _bns(net) and not any(m.training for m in _bns(net))
    with torch.no_grad():
        ref = net(x)
        net.train()
        assert not any(m.training for m in _bns(net))
        again = net(x)
        nn.Sequential(net).train()  # also when a parent module switches modes
        assert not any(m.training for m in _bns(net))
    for k in ref:
        torch.testing.assert_close(again[k], ref[k])
    net.eval()
    assert not net.training and not any(m.training for m in _bns(net))


# ---------------------------------------------------------------- VGG19 and backward compatibility
def test_vgg19_layout_and_vgg16_default_unchanged():
    assert list(VGG19_TAPS) == [f"relu{b}_{c}" for b, n in zip(range(1, 6), (2, 2, 4, 4, 4)) for c in range(1, n + 1)]
    assert VGG19_TAPS["relu5_4"] == 35 and VGG19_TAPS["relu4_2"] == 22 and VGG19_TAPS["relu1_1"] == 1
    assert len(vgg19_features()) == 37 and len(vgg19_features(3)) == 4
    v = VGGFeatures()  # unchanged default: VGG16, caffe convention, Johnson taps
    assert v.arch == "vgg16" and v.preprocess.convention == "caffe"
    assert v.taps == ["relu1_2", "relu2_2", "relu3_3", "relu4_3"] and len(v.features) == 23
    v19 = VGGFeatures(("relu4_2",), convention="caffe", arch="vgg19")
    assert len(v19.features) == 23 and v19.preprocess.convention == "caffe"
    with pytest.raises(ValueError, match="unknown VGG19 taps"):
        VGGFeatures(("relu9_9",), arch="vgg19")
    with pytest.raises(ValueError, match="unknown VGG16 taps"):
        VGGFeatures(("relu5_4",))  # VGG16 has no relu5_4
    with pytest.raises(ValueError, match="architecture"):
        VGGFeatures(arch="vgg11")
