"""Image transformation network of Johnson, Alahi & Fei-Fei (2016), with instance normalisation.

"Perceptual Losses for Real-Time Style Transfer and Super-Resolution" trained a feed-forward network
once per style; Ulyanov et al. (2016) showed that replacing batch norm by *instance* norm makes the
stylisation independent of the content's contrast, and Dumoulin et al. (2017) that one network can
hold N styles when only the affine parameters of every norm layer differ per style (conditional
instance norm). All three ideas are here.

Design choices, made where they matter:

* **Reflection padding** instead of zero padding: zeros create a dark frame the network learns to
  paint over, which shows as a border artefact (pytorch/examples fast_neural_style does the same).
* **Nearest upsampling + convolution** instead of transposed convolution: a strided transposed
  convolution overlaps unevenly and prints a checkerboard (Odena et al., 2016, "Deconvolution and
  Checkerboard Artifacts"). The ``fast`` configuration's last layer uses a *pixel shuffle*
  (sub-pixel convolution): at full resolution it only ever holds the 3 output channels, which is
  what makes it cheap on a CPU, and a sub-pixel convolution has no uneven overlap either.
* **Instance norm statistics are pluggable** through :class:`NormContext`, so the engine can compute
  them over a whole image (or a whole stack) in tiles and apply the *global* statistics to every
  tile: the tiled result then equals the untiled one, with no seams.

The ``classic`` configuration is the pytorch/examples layout (parameter names included), so its
state dicts load directly; ``fast`` is ours, designed for laptop CPUs (see ``CONFIGS``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

EPS = 1e-5
#: fan-in x output scale of ``fast``'s final convolution (3x3 over 16 + 3 channels, x255): final layers
#: with more get a proportionally lower learning rate (:meth:`TransformerNet.lr_scales`)
HEAD_LR_REFERENCE = 171 * 255.0

#: Named configurations. ``classic``: 32/64/128 channels, 5 residual blocks, 9x9 outer kernels (the
#: pytorch/examples layout, ~1.7 M parameters, ~154 k multiply-adds per pixel). ``fast``: every
#: encoder layer has stride 2, so the residual blocks run at 1/8 of the resolution with 64
#: channels, and the decoder ends in a pixel shuffle; ~9 k multiply-adds per pixel (17x fewer) and no
#: full-resolution tensor wider than 3 channels. ``out_scale``: the last convolution predicts [0, 1] and
#: is scaled to [0, 255] (and starts at mid-grey), so training does not spend its first thousands of
#: Adam steps growing the last layer's weights to the output range; imported pytorch/examples
#: checkpoints use ``out_scale=1``. ``input_skip`` (``fast`` only): the network predicts a residual
#: added to its input times a learnable per-channel gain, so it starts as the identity (content loss 0) and spends its first training
#: steps on the style, not on learning to reproduce the photo through a 1/8-resolution bottleneck;
#: (not used by the named configurations: instance norm removes the absolute intensities the
#: residual would need to recolour the skip, so colours learn slowly). ``fast`` instead upsamples to
#: full resolution before its last convolution (``head="upsample"``) and feeds that convolution the
#: input image too (``detail_skip``): the 1/8-resolution body carries the style, the 3 extra input
#: channels carry the full-resolution edges that keep the content recognisable.
CONFIGS: dict[str, dict] = {
    "classic": dict(channels=(32, 64, 128), kernels=(9, 3, 3), strides=(1, 2, 2), n_res=5, final_kernel=9,
                    out_scale=255.0),
    "fast": dict(channels=(16, 32, 64), kernels=(5, 3, 3), strides=(2, 2, 2), n_res=4, final_kernel=3,
                 out_scale=255.0, head="upsample", detail_skip=True),
}


class StopForward(Exception):
    """Raised by a norm layer in *collect* mode once it has its statistics (nothing after it runs)."""


@dataclass
class NormContext:
    """Tells every norm layer of one forward pass where its statistics come from.

    ``stats[i]`` is the global ``(mean, var)`` (each ``[C]``) of norm layer ``i`` in forward order;
    layers with an index beyond ``stats`` compute them from their input as plain instance norm does,
    except layer ``collect``, which accumulates count/mean/M2 of its input over ``region`` (``y0, x0,
    h, w`` in *input* pixels, a multiple of the network's factor) into ``result`` and stops the pass.
    """

    stats: list = field(default_factory=list)
    collect: Optional[int] = None
    region: Optional[tuple[int, int, int, int]] = None
    result: Optional[tuple[float, torch.Tensor, torch.Tensor]] = None


class StyleNorm(nn.Module):
    """Instance norm with affine parameters per style (conditional instance norm).

    With one style the parameters are ``[C]`` (the ``nn.InstanceNorm2d(affine=True)`` layout);
    with N styles they are ``[N, C]`` and a weight vector over styles blends them.
    """

    def __init__(self, channels: int, n_styles: int = 1, stride: int = 1):
        super().__init__()
        shape = (channels,) if n_styles == 1 else (n_styles, channels)
        self.weight = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape))
        self.n_styles = n_styles
        self.stride = stride  # input pixels per pixel of this layer's input
        self.index = -1  # position in forward order, set by the network

    def affine(self, style_weights: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.n_styles == 1:
            return self.weight, self.bias
        if style_weights is None:
            raise ValueError("this network holds several styles: give style weights")
        w = style_weights.to(self.weight.dtype)
        return w @ self.weight, w @ self.bias

    def forward(self, x: torch.Tensor, style_weights=None, ctx: Optional[NormContext] = None) -> torch.Tensor:
        gamma, beta = self.affine(style_weights)
        if ctx is not None and self.index < len(ctx.stats):
            mean, var = ctx.stats[self.index]
            scale = gamma * torch.rsqrt(var.to(x.dtype) + EPS)
            shift = beta - mean.to(x.dtype) * scale
            return x * scale[None, :, None, None] + shift[None, :, None, None]
        if ctx is not None and ctx.collect == self.index:
            y0, x0, h, w = (v // self.stride for v in ctx.region)
            v = x[:, :, y0:y0 + h, x0:x0 + w].double()
            n = v.shape[0] * v.shape[2] * v.shape[3]
            mean = v.mean(dim=(0, 2, 3))
            m2 = ((v - mean[None, :, None, None]) ** 2).sum(dim=(0, 2, 3))
            ctx.result = (float(n), mean, m2)
            raise StopForward
        if self.n_styles == 1:
            return F.instance_norm(x, weight=gamma, bias=beta, eps=EPS)
        return F.instance_norm(x, eps=EPS) * gamma[None, :, None, None] + beta[None, :, None, None]


class ConvLayer(nn.Module):
    """Reflection padding + convolution (pytorch/examples ``ConvLayer``; ``conv2d`` keeps its name)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, upsample: int = 1):
        super().__init__()
        self.upsample = upsample
        self.pad = kernel // 2
        self.conv2d = nn.Conv2d(cin, cout, kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample > 1:
            x = F.interpolate(x, scale_factor=self.upsample, mode="nearest")
        if self.pad:
            mode = "reflect" if min(x.shape[-2:]) > self.pad else "replicate"
            x = F.pad(x, (self.pad,) * 4, mode=mode)
        return self.conv2d(x)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with norm; identity shortcut (He et al. 2016, as in Johnson et al.)."""

    def __init__(self, channels: int, n_styles: int, stride: int):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3)
        self.in1 = StyleNorm(channels, n_styles, stride)
        self.conv2 = ConvLayer(channels, channels, 3)
        self.in2 = StyleNorm(channels, n_styles, stride)

    def forward(self, x, style_weights=None, ctx=None):
        y = F.relu(self.in1(self.conv1(x), style_weights, ctx))
        return x + self.in2(self.conv2(y), style_weights, ctx)


class TransformerNet(nn.Module):
    """Encoder (strided convs) - residual blocks - decoder (upsample + conv), instance norm throughout.

    Input and output are RGB in ``[0, 255]`` (the pytorch/examples convention, so its checkpoints
    work unchanged); the output is not clamped here. The spatial size must be a multiple of
    :attr:`factor`; the engine pads and crops.
    """

    def __init__(
        self,
        channels: tuple[int, ...] = (32, 64, 128),
        kernels: tuple[int, ...] = (9, 3, 3),
        strides: tuple[int, ...] = (1, 2, 2),
        n_res: int = 5,
        final_kernel: int = 9,
        n_styles: int = 1,
        out_scale: float = 1.0,
        input_skip: bool = False,
        head: str = "auto",
        detail_skip: bool = False,
    ):
        super().__init__()
        if not (len(channels) == len(kernels) == len(strides)) or any(s not in (1, 2) for s in strides):
            raise ValueError("channels, kernels and strides must have one entry per encoder layer; strides 1 or 2")
        if n_styles < 1:
            raise ValueError("n_styles must be >= 1")
        self.config = dict(channels=tuple(channels), kernels=tuple(kernels), strides=tuple(strides),
                           n_res=n_res, final_kernel=final_kernel, n_styles=n_styles,
                           out_scale=float(out_scale), input_skip=bool(input_skip), head=head,
                           detail_skip=bool(detail_skip))
        self.detail_skip = bool(detail_skip)
        self.out_scale = float(out_scale)
        self.input_skip = bool(input_skip)
        if self.input_skip:  # learnable colour transform of the skip (identity at init): moves the palette globally
            self.skip = nn.Conv2d(3, 3, 1)
            with torch.no_grad():
                self.skip.weight.copy_(torch.eye(3)[:, :, None, None])
                self.skip.bias.zero_()
        self.n_styles = n_styles
        self.n_down = len(channels)
        cin, f = 3, 1
        self._radius = 0  # receptive-field radius in input pixels
        for i, (c, k, s) in enumerate(zip(channels, kernels, strides), start=1):
            setattr(self, f"conv{i}", ConvLayer(cin, c, k, s))
            self._radius += (k // 2) * f
            f *= s
            setattr(self, f"in{i}", StyleNorm(c, n_styles, f))
            cin = c
        self.factor = f
        for j in range(1, n_res + 1):
            setattr(self, f"res{j}", ResidualBlock(cin, n_styles, f))
            self._radius += 2 * f
        self.n_res = n_res
        # decoder mirrors every stride-2 encoder layer but the first one, which the final layer undoes
        ups = [i for i in range(len(channels) - 1, 0, -1) if strides[i] == 2]
        self.n_up = len(ups)
        for j, i in enumerate(ups, start=1):
            f //= 2
            setattr(self, f"deconv{j}", ConvLayer(cin, channels[i - 1], 3, upsample=2))
            setattr(self, f"in{self.n_down + j}", StyleNorm(channels[i - 1], n_styles, f))
            self._radius += 1 * f
            cin = channels[i - 1]
        # final layer: plain conv at full resolution, or sub-pixel conv (pixel shuffle) when the first
        # encoder layer was strided; f is then 2 and the convolution runs at half resolution
        if head == "upsample" and f > 1:  # nearest upsample + conv at full resolution
            extra = 3 if detail_skip else 0
            setattr(self, f"deconv{self.n_up + 1}", ConvLayer(cin + extra, 3, final_kernel, upsample=1))
            self._up_final = f
            self._radius += (final_kernel // 2) + f
            f = 1
        else:
            if detail_skip:
                raise ValueError("detail_skip needs head='upsample'")
            self._up_final = 1
            setattr(self, f"deconv{self.n_up + 1}", ConvLayer(cin, 3 * f * f, final_kernel))
        self.shuffle = f
        if self.out_scale != 1.0:
            with torch.no_grad():
                last = getattr(self, f"deconv{self.n_up + 1}").conv2d
                last.bias.fill_(0.0 if self.input_skip else 127.5 / self.out_scale)
                last.weight.mul_(0.1)
        self._radius += (final_kernel // 2) * f + (f - 1)
        for idx, m in enumerate(self.norms()):
            m.index = idx

    # rows: kernel offset -1, 0, +1 at low resolution; columns: tap of the 3x3 kernel at full resolution
    _PHASE = torch.tensor([[[1.0, 0, 0], [0, 1, 1], [0, 0, 0]],   # even output rows/columns
                           [[0.0, 0, 0], [1, 1, 0], [0, 0, 1]]])  # odd output rows/columns

    def _upsample_head(self, f: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """``conv3x3(reflect_pad(nearest_up2(f)))`` computed without the full-resolution feature map.

        A 3x3 convolution of a nearest-x2-upsampled map is, for each of the 4 output phases, a 3x3
        convolution of the low-resolution map with a kernel whose taps are summed pairwise (``_PHASE``),
        and reflection padding of the upsampled map is replicate padding of the low-resolution one. So
        one low-resolution convolution with 4x the output channels and a pixel shuffle give the same
        result exactly, at a quarter of the memory traffic. The detail path (the input image) is
        linear in the same convolution, so it is a separate 3->3 convolution at full resolution.
        """
        conv = getattr(self, f"deconv{self.n_up + 1}").conv2d
        w, b = conv.weight, conv.bias
        c = f.shape[1]
        wf = w[:, :c]
        ph = self._PHASE.to(w.dtype).to(w.device)
        k = torch.einsum("ayk,oikl,bxl->oabiyx", ph, wf, ph).reshape(-1, c, 3, 3)  # (o, a, b) -> o*4 + a*2 + b
        y = F.pixel_shuffle(F.conv2d(F.pad(f, (1, 1, 1, 1), mode="replicate"), k), 2)
        if self.detail_skip:
            d = x0 * (1.0 / 255.0) - 0.5
            y = y + F.conv2d(F.pad(d, (1, 1, 1, 1), mode="reflect" if min(d.shape[-2:]) > 1 else "replicate"),
                             w[:, c:], b)
        else:
            y = y + b[None, :, None, None]
        return y

    def lr_scales(self) -> dict[str, float]:
        """Learning-rate multipliers by parameter name (parameters not named here: 1).

        Adam moves every weight by about the learning rate per step whatever its gradient, so the
        final convolution's output moves by about ``lr * fan_in * out_scale`` per step. ``fast``'s final
        layer (3x3 over 16 + 3 channels, ``out_scale`` 255) trains well at the default rate; ``classic``'s
        (9x9 over 32 channels) has 15x its fan-in and at the same rate its first steps throw the output
        far out of range (style loss 0.87 -> 6400 at step 2, still 2.9 at step 40 against 0.41 with
        this scaling). Its rate is scaled down to give the same output change per step as ``fast``'s.
        """
        name = f"deconv{self.n_up + 1}.conv2d.weight"
        w = getattr(self, f"deconv{self.n_up + 1}").conv2d.weight
        fan_in = w.shape[1] * w.shape[2] * w.shape[3]
        scale = min(1.0, HEAD_LR_REFERENCE / (fan_in * abs(self.out_scale)))
        return {name: scale} if scale < 1.0 else {}

    def norms(self) -> list[StyleNorm]:
        """Norm layers in forward order (the order of :attr:`NormContext.stats`)."""
        out = [getattr(self, f"in{i}") for i in range(1, self.n_down + 1)]
        for j in range(1, self.n_res + 1):
            res = getattr(self, f"res{j}")
            out += [res.in1, res.in2]
        out += [getattr(self, f"in{self.n_down + j}") for j in range(1, self.n_up + 1)]
        return out

    @property
    def halo(self) -> int:
        """Context (input pixels, a multiple of :attr:`factor`) a tile needs on each side to be exact."""
        r = self._radius + self.factor
        return -(-r // self.factor) * self.factor

    def forward(self, x: torch.Tensor, style_weights: Optional[torch.Tensor] = None,
                ctx: Optional[NormContext] = None) -> torch.Tensor:
        x0 = x
        for i in range(1, self.n_down + 1):
            x = F.relu(getattr(self, f"in{i}")(getattr(self, f"conv{i}")(x), style_weights, ctx))
        for j in range(1, self.n_res + 1):
            x = getattr(self, f"res{j}")(x, style_weights, ctx)
        for j in range(1, self.n_up + 1):
            x = F.relu(getattr(self, f"in{self.n_down + j}")(getattr(self, f"deconv{j}")(x), style_weights, ctx))
        if self._up_final == 2:
            x = self._upsample_head(x, x0)
        else:
            if self._up_final > 1:
                x = F.interpolate(x, scale_factor=self._up_final, mode="nearest")
            if self.detail_skip:
                x = torch.cat([x, x0 * (1.0 / 255.0) - 0.5], dim=1)
            x = getattr(self, f"deconv{self.n_up + 1}")(x)
        if self.shuffle > 1:
            x = F.pixel_shuffle(x, self.shuffle)
        if self.out_scale != 1.0:
            x = x * self.out_scale
        return x + self.skip(x0) if self.input_skip else x


def transformer_net(arch: str = "classic", n_styles: int = 1, **overrides) -> TransformerNet:
    """Build a named configuration (``classic`` or ``fast``), optionally with N styles."""
    if arch not in CONFIGS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(CONFIGS)}")
    return TransformerNet(**{**CONFIGS[arch], **overrides, "n_styles": n_styles})
