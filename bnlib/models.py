"""The networks of the book: VGG, LeNet, the MNIST MLP and the deep linear network.

Every conv/linear layer of a hidden block is followed by ``make_norm(norm, ...)`` and then
the ReLU (Santurkar et al. 2018 apply BN before the non-linearity); the MLP can also put the
norm after the ReLU (Reyes & Levy). Weights use Glorot-uniform initialisation, biases zero
(Santurkar et al., Appendix A). Layer numbers count conv/linear layers from 1, in
forward order: ``weight_layers(model)[i - 1]`` is layer i.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from .norms import make_norm

ARCHS = ("vgg", "lenet", "mlp", "dln")

VGG_CONFIGS = {  # output channels per conv, "M" = 2x2 max-pool (Simonyan & Zisserman 2015)
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"],
}


def glorot_init(model: nn.Module) -> nn.Module:
    """Glorot-uniform weights and zero biases for every conv and linear layer."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """Conv and linear layers in forward order; layer i (1-based) is ``[i - 1]``."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _seeded(builder):
    """Make ``builder(..., seed=s)`` draw its initial weights from ``seed``: it runs under a
    forked CPU RNG seeded with ``s``, so it neither depends on nor changes the global state."""
    @functools.wraps(builder)
    def wrapper(*args, seed: int = 0, **kw):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return builder(*args, seed=seed, **kw)
    return wrapper


def norm_slots(model: nn.Module) -> list[nn.Module]:
    """The normaliser after each hidden weight layer, in forward order (an Identity in the
    standard network): where activations are recorded before (its input) and after (its output)."""
    return [m for m in model.modules() if getattr(m, "is_norm_slot", False)]


def _slot(norm: str, channels: int, *, spatial: bool, seed: int, **norm_kw) -> nn.Module:
    n = make_norm(norm, channels, spatial=spatial, seed=seed, **norm_kw)
    n.is_norm_slot = True
    return n


def _block(layer: nn.Module, norm: str, channels: int, *, spatial: bool, seed: int,
           norm_after_relu: bool = False, **norm_kw) -> list[nn.Module]:
    n = _slot(norm, channels, spatial=spatial, seed=seed, **norm_kw)
    return [layer, nn.ReLU(), n] if norm_after_relu else [layer, n, nn.ReLU()]


@_seeded
def vgg(depth: int = 11, *, width: float = 1.0, norm: str = "none", num_classes: int = 10,
        in_channels: int = 3, hidden: int | None = None, seed: int = 0, **norm_kw) -> nn.Sequential:
    """VGG-``depth`` for 32x32 inputs with channels scaled by ``width``.

    The classifier is one hidden linear layer of ``hidden`` units (default: the last conv
    width) then the output layer, our choice since the paper gives no layer list. Noise
    modules get seeds ``seed, seed + 1, ...`` so every layer draws independent noise.
    """
    if depth not in VGG_CONFIGS:
        raise ValueError(f"VGG depth must be one of {sorted(VGG_CONFIGS)}; got {depth}")
    if width <= 0:
        raise ValueError(f"VGG width multiplier must be > 0; got {width}")
    layers: list[nn.Module] = []
    c_in, k = in_channels, 0
    for v in VGG_CONFIGS[depth]:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        c_out = max(1, round(v * width))
        layers += _block(nn.Conv2d(c_in, c_out, 3, padding=1), norm, c_out, spatial=True,
                         seed=seed + k, **norm_kw)
        c_in, k = c_out, k + 1
    hidden = hidden or c_in
    layers += [nn.Flatten()]
    layers += _block(nn.Linear(c_in, hidden), norm, hidden, spatial=False, seed=seed + k, **norm_kw)
    layers += [nn.Linear(hidden, num_classes)]
    return glorot_init(nn.Sequential(*layers))


@_seeded
def lenet(*, norm: str = "none", in_channels: int = 3, image_size: int = 32,
          num_classes: int = 10, seed: int = 0, **norm_kw) -> nn.Sequential:
    """LeNet-5 (LeCun et al. 1998): two 5x5 convs with max-pooling, then 120-84-classes."""
    s = ((image_size - 4) // 2 - 4) // 2  # spatial size after conv5 / pool2 / conv5 / pool2
    layers = _block(nn.Conv2d(in_channels, 6, 5), norm, 6, spatial=True, seed=seed, **norm_kw)
    layers += [nn.MaxPool2d(2)]
    layers += _block(nn.Conv2d(6, 16, 5), norm, 16, spatial=True, seed=seed + 1, **norm_kw)
    layers += [nn.MaxPool2d(2), nn.Flatten()]
    layers += _block(nn.Linear(16 * s * s, 120), norm, 120, spatial=False, seed=seed + 2, **norm_kw)
    layers += _block(nn.Linear(120, 84), norm, 84, spatial=False, seed=seed + 3, **norm_kw)
    layers += [nn.Linear(84, num_classes)]
    return glorot_init(nn.Sequential(*layers))


@_seeded
def mlp(*, norm: str = "none", sizes: tuple[int, ...] = (784, 100, 10),
        norm_after_relu: bool = True, seed: int = 0, **norm_kw) -> nn.Sequential:
    """The seed-002 MLP (784-100-10 by default); the norm follows the ReLU unless told not to."""
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (a, b) in enumerate(zip(sizes[:-2], sizes[1:-1])):
        layers += _block(nn.Linear(a, b), norm, b, spatial=False, seed=seed + i,
                         norm_after_relu=norm_after_relu, **norm_kw)
    layers += [nn.Linear(sizes[-2], sizes[-1])]
    return glorot_init(nn.Sequential(*layers))


@_seeded
def deep_linear(*, depth: int = 25, width: int = 10, norm: str = "none",
                norm_output: bool = False, seed: int = 0, **norm_kw) -> nn.Sequential:
    """Santurkar et al.'s deep linear network: ``depth`` bias-free ``width`` x ``width`` layers.

    The norm follows every linear layer except the last (``norm_output=True`` adds one after
    the last too, our choice as a parameter); for ``"none"`` it is an Identity, the recording
    site. No non-linearity anywhere.
    """
    layers: list[nn.Module] = []
    for i in range(depth):
        layers.append(nn.Linear(width, width, bias=False))
        if i < depth - 1 or norm_output:
            layers.append(_slot(norm, width, spatial=False, seed=seed + i, **norm_kw))
    return glorot_init(nn.Sequential(*layers))


def _frozen(v: Any) -> Any:
    """Dicts become sorted tuples of pairs, lists tuples: hashable, JSON-stable spec values."""
    if isinstance(v, dict):
        return tuple(sorted((k, _frozen(x)) for k, x in v.items()))
    return tuple(_frozen(x) for x in v) if isinstance(v, list) else v


@dataclass(frozen=True)
class ModelSpec:
    """What network to build: architecture, normaliser and the builder's options.

    A field the architecture's builder takes and that is left None gets the builder's
    default, so equal networks have equal specs (and keys); other fields stay None.
    ``noise`` and ``lp`` are options of the normaliser (pairs or a dict; see
    ``norms.make_norm``). ``build(spec, seed)`` makes it.
    """

    arch: str                              # "vgg", "lenet", "mlp" or "dln"
    norm: str = "none"                     # one of norms.NORM_KINDS
    depth: int | None = None               # VGG depth (11, 13, 16, 19) or DLN layers
    width: float | None = None             # VGG channel multiplier, or DLN layer width
    in_channels: int | None = None         # image channels (VGG, LeNet)
    image_size: int | None = None          # LeNet input size
    sizes: tuple | None = None             # MLP layer sizes
    norm_after_relu: bool | None = None    # MLP: norm after the ReLU (Reyes & Levy)
    norm_output: bool | None = None        # DLN: a norm after the last layer too
    noise: tuple | None = None             # Algorithm 1 options (n_mu, n_sigma, r_mu, r_sigma)
    lp: tuple | None = None                # LpNorm options (center, norm_of, eps, ...)
    groups: int | None = None              # GroupNorm groups

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"Unknown architecture {self.arch!r}; known: {', '.join(ARCHS)}")
        for k in ("noise", "lp", "sizes"):
            object.__setattr__(self, k, _frozen(getattr(self, k)))
        defaults = _builder_defaults(self.arch)
        for k, v in asdict(self).items():  # the builder's defaults made explicit: one network, one key
            if k in defaults and v is None:
                object.__setattr__(self, k, _frozen(defaults[k]))
        if self.width is not None:
            object.__setattr__(self, "width", float(self.width))

    def with_(self, **changes: Any) -> ModelSpec:
        """A copy with ``changes`` applied (e.g. ``spec.with_(norm="bn")``)."""
        return ModelSpec(**{**asdict(self), **changes})

    def label(self) -> str:
        """Short human label, e.g. ``"vgg11/0.125 bn"``."""
        size = "/".join(f"{v:g}" for v in (self.depth, self.width) if v is not None)
        return f"{self.arch}{size} {self.norm}"


_BUILDERS = {"vgg": vgg, "lenet": lenet, "mlp": mlp, "dln": deep_linear}


@functools.cache
def _builder_defaults(arch: str) -> dict[str, Any]:
    sig = inspect.signature(_BUILDERS[arch])
    return {k: p.default for k, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}


def build(spec: ModelSpec, seed: int) -> nn.Sequential:
    """The network ``spec`` with its initial weights and noise streams drawn from ``seed``.

    Every builder seeds its own initialisation (``_seeded``), so the result never depends on
    (or changes) the caller's random state.
    """
    kw = {k: v for k, v in asdict(spec).items() if v is not None and k != "arch"}
    for k in ("noise", "lp"):
        if k in kw:
            kw[k] = dict(kw[k])
    if spec.arch == "dln" and "width" in kw:
        kw["width"] = int(kw["width"])
    return _BUILDERS[spec.arch](seed=seed, **kw)
