"""Image encoders: normalised float images (B, C, H, W) -> embeddings (B, embed_dim).

``build_image_encoder(name, ...)`` finds them by name (``IMAGE_ENCODERS`` lists them):

- ``resnet18`` / ``resnet34`` / ``resnet50``: torchvision's ResNets (``torchvision.models.ResNet``
  subclasses with the same parameter names, so torchvision state dicts load into width 1),
  ``fc`` replaced by the identity, with

  * a small-image stem (3x3 conv, stride 1, no max-pool) when ``small_stem`` -- the usual
    CIFAR variant, chosen by default for images of at most 64 px;
  * a ``width`` multiplier on every stage (64 * width base channels), e.g. ``width=0.5``
    for a half-width ResNet-18 (embed_dim 256) that trains about 3-4x faster on a CPU.

- ``small_cnn``: four 3x3 conv + BatchNorm + ReLU layers and global average pooling, for
  tiny images (8x8 digits, 28x28 MNIST); ``embed_dim`` sets its output width.

- ``vit_tiny`` (dim 128, 4 blocks, 4 heads) / ``vit_small`` (dim 192, 6 blocks, 6 heads): Vision
  Transformers sized for 28-64 px images (patch 4 up to 32 px), built as the generic
  :class:`multissl.transformer.TokenEncoder` with a patch-embedding stem -- the encoders of the
  masked methods (``mae``, ``data2vec``); options ``patch_size``, ``dim``, ``depth``, ``heads``,
  ``mlp_ratio``, ``dropout``, ``pool`` ("mean" or "cls").

Every encoder has an integer ``embed_dim`` attribute and a ``forward_tokens(x)`` method
returning the last feature map as tokens (B, N, embed_dim).
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple, Type, Union

import torch
from einops import rearrange
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from multissl.errors import ConfigError
from multissl.transformer import TokenEncoder

SMALL_IMAGE_MAX = 64  # images up to this size get the CIFAR stem by default


class ResNetEncoder(ResNet):
    """A torchvision ResNet trunk with a configurable stem and width, returning (B, embed_dim)."""

    def __init__(
        self,
        block: Type[Union[BasicBlock, Bottleneck]],
        layers: List[int],
        in_channels: int = 3,
        width: float = 1.0,
        small_stem: bool = False,
        zero_init_residual: bool = False,
    ) -> None:
        nn.Module.__init__(self)  # ResNet.__init__ hard-codes 64 channels and 3 inputs
        if width <= 0:
            raise ConfigError(f"encoder width must be positive, got {width}")
        base = max(1, int(round(64 * width)))
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = base
        self.dilation = 1
        self.groups = 1
        self.base_width = 64
        if small_stem:
            self.conv1 = nn.Conv2d(in_channels, base, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, base, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, base, layers[0])
        self.layer2 = self._make_layer(block, base * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, base * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, base * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Identity()
        self.embed_dim = base * 8 * block.expansion
        self.in_channels = in_channels
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map (B, embed_dim, h, w)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).flatten(2).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(self.forward_features(x)), 1)


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Four 3x3 conv-BN-ReLU layers (widths w, 2w, 4w, embed_dim; the 2nd and 3rd with
    stride 2) and global average pooling. For images above 32 px the first conv has
    stride 2 too, so the cost stays modest; it is meant for tiny images."""

    def __init__(self, in_channels: int = 3, width: float = 1.0, embed_dim: int = 256, image_size: Optional[int] = None):
        super().__init__()
        if width <= 0 or embed_dim <= 0:
            raise ConfigError(f"small_cnn needs positive width and embed_dim, got {width}, {embed_dim}")
        w = max(1, int(round(32 * width)))
        first_stride = 2 if image_size is not None and image_size > 32 else 1
        self.features = nn.Sequential(
            _conv_bn_relu(in_channels, w, first_stride),
            _conv_bn_relu(w, 2 * w, 2),
            _conv_bn_relu(2 * w, 4 * w, 2),
            _conv_bn_relu(4 * w, embed_dim, 1),
        )
        self.embed_dim = int(embed_dim)
        self.in_channels = in_channels
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(2).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(-2, -1))


def _resnet(block, layers) -> Callable[..., nn.Module]:
    def build(in_channels: int = 3, image_size: Optional[int] = None, width: float = 1.0,
              small_stem: Optional[bool] = None, zero_init_residual: bool = False) -> nn.Module:
        if small_stem is None:
            small_stem = image_size is not None and image_size <= SMALL_IMAGE_MAX
        return ResNetEncoder(block, layers, in_channels=in_channels, width=width, small_stem=small_stem,
                             zero_init_residual=zero_init_residual)

    return build


def _small_cnn(in_channels: int = 3, image_size: Optional[int] = None, width: float = 1.0, embed_dim: int = 256) -> nn.Module:
    return SmallCNN(in_channels=in_channels, width=width, embed_dim=embed_dim, image_size=image_size)


def default_patch_size(height: int, width: int) -> int:
    """Patch side for a ViT on (height, width) images: 4 up to 32 px (7x7 tokens on 28 px
    MNIST, 8x8 on CIFAR), 8 up to 64 px, else 16 (the usual ViT-B/16 patch at 224 px); the
    largest of those that divides both sides, else 1."""
    side = min(height, width)
    preferred = 4 if side <= 32 else 8 if side <= 64 else 16
    for p in (preferred, 8, 7, 4, 2):
        if p <= preferred and height % p == 0 and width % p == 0:
            return p
    return 1


class PatchEmbedding(nn.Module):
    """ViT stem: a conv with kernel = stride = ``patch_size``, i.e. a linear map of every
    non-overlapping patch, flattened to tokens (B, (H/p)(W/p), dim) in row-major order.

    ``target_dim`` (p*p*C) tells the masked methods how many values a patch's pixel target has
    (the image adapter's ``tokens()`` makes them in the same order, ``(p q c)``)."""

    def __init__(self, in_channels: int, patch_size: int, dim: int, image_size: Tuple[int, int]) -> None:
        super().__init__()
        h, w = image_size
        if patch_size < 1 or h % patch_size or w % patch_size:
            raise ConfigError(f"ViT patch_size {patch_size} must divide the image size {h}x{w}; choose another "
                              "patch_size or resize with the image adapter's image_size")
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.patch_size = int(patch_size)
        self.in_channels = int(in_channels)
        self.image_size = (int(h), int(w))
        self.grid = (h // patch_size, w // patch_size)
        self.num_tokens = self.grid[0] * self.grid[1]
        self.target_dim = patch_size * patch_size * in_channels
        # MAE initialises the patch projection like a linear layer (xavier on the flattened kernel)
        nn.init.xavier_uniform_(self.proj.weight.view(dim, -1))
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, None]:
        if tuple(x.shape[-2:]) != self.image_size or x.shape[1] != self.in_channels:
            raise ConfigError(f"this ViT was built for {self.in_channels}x{self.image_size[0]}x{self.image_size[1]} "
                              f"images, got {tuple(x.shape[1:])}")
        return rearrange(self.proj(x), "b d h w -> b (h w) d"), None


class VisionTransformer(TokenEncoder):
    """ViT (Dosovitskiy et al. 2021): patch embedding + :class:`~multissl.transformer.TokenEncoder`.

    ``forward(images) -> (B, dim)`` (mean of the patch tokens); ``forward_tokens`` gives the
    final-norm patch tokens (B, N, dim) like the CNN encoders' feature-map tokens."""

    def __init__(self, in_channels: int = 3, image_size: Union[int, Tuple[int, int], None] = None,
                 patch_size: Optional[int] = None, dim: int = 128, depth: int = 4, heads: int = 4,
                 mlp_ratio: float = 4.0, dropout: float = 0.0, pool: str = "mean") -> None:
        if image_size is None:
            raise ConfigError("a ViT needs the image size: prepare data first (the adapter stores it) or pass image_size=")
        h, w = (image_size, image_size) if isinstance(image_size, int) else (int(image_size[0]), int(image_size[1]))
        patch = int(patch_size) if patch_size is not None else default_patch_size(h, w)
        stem = PatchEmbedding(in_channels, patch, dim, (h, w))
        super().__init__(stem, dim=dim, depth=depth, heads=heads, max_tokens=stem.num_tokens,
                         mlp_ratio=mlp_ratio, dropout=dropout, pool=pool)
        self.in_channels = in_channels
        self.patch_size = patch

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(*self.tokenize(x))


def _vit(dim: int, depth: int, heads: int) -> Callable[..., nn.Module]:
    def build(in_channels: int = 3, image_size: Union[int, Tuple[int, int], None] = None,
              patch_size: Optional[int] = None, dim: int = dim, depth: int = depth, heads: int = heads,
              mlp_ratio: float = 4.0, dropout: float = 0.0, pool: str = "mean") -> nn.Module:
        return VisionTransformer(in_channels, image_size, patch_size, dim, depth, heads, mlp_ratio, dropout, pool)

    return build


IMAGE_ENCODERS: Dict[str, Callable[..., nn.Module]] = {
    "resnet18": _resnet(BasicBlock, [2, 2, 2, 2]),
    "resnet34": _resnet(BasicBlock, [3, 4, 6, 3]),
    "resnet50": _resnet(Bottleneck, [3, 4, 6, 3]),
    "small_cnn": _small_cnn,
    # ViTs sized for small images (28-64 px) on a CPU budget; patch 4 by default at <= 32 px
    "vit_tiny": _vit(dim=128, depth=4, heads=4),
    "vit_small": _vit(dim=192, depth=6, heads=6),
}
#: encoders that take tokens (the masked methods need one of these)
TOKEN_ENCODERS = ("vit_tiny", "vit_small")


def build_image_encoder(name: str = "resnet18", **kwargs) -> nn.Module:
    """An encoder by name. Common options: ``in_channels``, ``image_size`` (picks the stem),
    ``width``; ResNets also take ``small_stem`` and ``zero_init_residual``, ``small_cnn``
    takes ``embed_dim``."""
    key = name.lower().replace("-", "_")
    if key not in IMAGE_ENCODERS:
        raise ConfigError(f"unknown image encoder {name!r}; available: {', '.join(IMAGE_ENCODERS)}")
    try:
        return IMAGE_ENCODERS[key](**kwargs)
    except TypeError as exc:  # an option the builder does not take
        raise ConfigError(f"image encoder {name!r}: {exc}") from None


__all__ = ["IMAGE_ENCODERS", "TOKEN_ENCODERS", "ResNetEncoder", "SmallCNN", "VisionTransformer", "PatchEmbedding",
           "build_image_encoder", "default_patch_size", "SMALL_IMAGE_MAX"]
