"""The architectures, in plain PyTorch (random init; nothing is downloaded).

Every network takes images as (batch, channels, size, size) float tensors (the GRU takes
(batch, slices, channels, size, size) plus each series' slice count) and has `embed(x)`, the
vector its head reads, which `medspark deep embed` writes as features. `build_model(spec)`
makes one from the JSON spec saved with the model (`DeepSettings.architecture`), so a saved
`model.pt` state dict can be loaded back without medspark's settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


def conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv (no bias), batch norm, ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class ConvTrunk(nn.Module):
    """conv-BN-ReLU + 2x2 max-pool per width (no pool when the map is already 1 px), then
    global average (or max) pooling: (B, C, H, W) -> (B, widths[-1]). Global max pooling
    suits "is there a small lesion anywhere" labels, where averaging dilutes it."""

    def __init__(self, in_channels: int, widths: Sequence[int], input_size: int,
                 pool: str = "avg"):
        super().__init__()
        layers: list[nn.Module] = []
        c, size = in_channels, input_size
        for w in widths:
            layers.append(conv_bn(c, w))
            if size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            c = w
        self.body = nn.Sequential(*layers)
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be avg or max, got {pool!r}")
        self.pool = nn.AdaptiveAvgPool2d(1) if pool == "avg" else nn.AdaptiveMaxPool2d(1)
        self.out_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.body(x)), 1)


class SmallCNN(nn.Module):
    """A small CNN classifier / regressor: `ConvTrunk`, dropout, linear head."""

    def __init__(self, in_channels: int, input_size: int, n_outputs: int,
                 widths: Sequence[int] = (16, 32, 64), dropout: float = 0.1,
                 pool: str = "avg"):
        super().__init__()
        self.trunk = ConvTrunk(in_channels, widths, input_size, pool)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.trunk.out_dim, n_outputs)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(x)))


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 conv-BN with an identity (or 1x1 projection) shortcut."""

    expansion = 1

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet with BasicBlocks (`blocks=[2, 2, 2, 2]` is ResNet-18), He-initialised.

    Stem: ResNet's 7x7 stride-2 conv + max-pool for inputs of 64 px and more; a 3x3 stride-1
    conv for smaller inputs (as CIFAR ResNets), which would otherwise vanish in the stem.
    """

    def __init__(self, in_channels: int, input_size: int, n_outputs: int, width: int = 64,
                 blocks: Sequence[int] = (2, 2, 2, 2), dropout: float = 0.0):
        super().__init__()
        if input_size >= 64:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(width), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, padding=1))
        else:
            self.stem = conv_bn(in_channels, width)
        stages, c = [], width
        for i, n in enumerate(blocks):
            out = width * 2**i
            layers = [BasicBlock(c, out, stride=1 if i == 0 else 2)]
            layers += [BasicBlock(out, out) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            c = out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c, n_outputs)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.stages(self.stem(x))), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(x)))


class ConvAutoencoder(nn.Module):
    """Stride-2 conv-BN-ReLU per width down to a linear `latent_dim` bottleneck, and back up
    with transposed convs; output through a sigmoid-free 3x3 conv (inputs need not be in
    [0, 1]). `embed` is the bottleneck; `reconstruction_error` the per-image MSE."""

    def __init__(self, in_channels: int, input_size: int, widths: Sequence[int] = (16, 32, 64),
                 latent_dim: int = 32, n_outputs: int = 0):
        super().__init__()
        del n_outputs  # the spec's field; an autoencoder reconstructs its input
        factor = 2 ** len(widths)
        if input_size % factor:
            raise ValueError(f"input_size {input_size} not divisible by {factor}")
        down, c = [], in_channels
        for w in widths:
            down.append(conv_bn(c, w, stride=2))
            c = w
        self.encoder = nn.Sequential(*down)
        self.grid = (c, input_size // factor, input_size // factor)
        flat = c * self.grid[1] * self.grid[2]
        self.to_latent = nn.Linear(flat, latent_dim)
        self.from_latent = nn.Linear(latent_dim, flat)
        up: list[nn.Module] = []
        for w in [*reversed(widths[:-1]), widths[0]]:
            up += [nn.ConvTranspose2d(c, w, 4, stride=2, padding=1, bias=False),
                   nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            c = w
        self.decoder = nn.Sequential(*up, nn.Conv2d(c, in_channels, 3, padding=1))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_latent(torch.flatten(self.encoder(x), 1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.from_latent(z).view(-1, *self.grid))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.embed(x))

    def reconstruction_error(self, x: torch.Tensor) -> torch.Tensor:
        """Mean squared error per image: (B,)."""
        return torch.mean((self(x) - x) ** 2, dim=(1, 2, 3))


class SliceGRU(nn.Module):
    """Series-level network: a `ConvTrunk` embeds each slice, a GRU reads the slice
    embeddings in `slice_position` order, a linear head reads its last hidden state(s)
    (`readout: last`) or the element-wise max / mean of its outputs over the slices (`max`:
    "a finding on any slice" labels; the gradient reaches that slice directly).

    `norm: layer` puts a LayerNorm on each slice embedding before the GRU. The trunk's pooled
    ReLU features share a large positive offset across slices (on the sample's CT planes a
    mean of ~2.9 against a spread of ~0.35 between slices at initialisation), so the GRU reads
    a nearly constant input with the slice-to-slice signal small beside it: without the norm,
    training on the sample lake sat at chance for 10-15 epochs or never left it (2 of 4 weight
    seeds in 16 epochs); with it every seed separated the validation series by epoch 10. `none`
    (what a spec without the key builds, as saved before the option existed) feeds the raw
    embedding.

    Input: (B, T, C, H, W) zero-padded to the longest series in the batch, and `lengths` (B,).
    """

    def __init__(self, in_channels: int, input_size: int, n_outputs: int,
                 encoder_widths: Sequence[int] = (16, 32), hidden: int = 64, layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.1, max_slices: int = 64,
                 pool: str = "avg", readout: str = "last", norm: str = "none"):
        super().__init__()
        del max_slices  # a data-side limit, kept in the spec
        if readout not in ("last", "max", "mean"):
            raise ValueError(f"readout must be last, max or mean, got {readout!r}")
        if norm not in ("layer", "none"):
            raise ValueError(f"norm must be layer or none, got {norm!r}")
        self.readout = readout
        self.encoder = ConvTrunk(in_channels, encoder_widths, input_size, pool)
        self.norm: nn.Module = nn.LayerNorm(self.encoder.out_dim) if norm == "layer" else \
            nn.Identity()
        self.gru = nn.GRU(self.encoder.out_dim, hidden, num_layers=layers, batch_first=True,
                          bidirectional=bidirectional, dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.out_dim = hidden * (2 if bidirectional else 1)
        self.head = nn.Linear(self.out_dim, n_outputs)

    def embed_slices(self, x: torch.Tensor) -> torch.Tensor:
        """Per-slice embeddings of (N, C, H, W) slices, as the GRU reads them:
        (N, encoder width)."""
        return self.norm(self.encoder(x))

    def embed(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        z = self.embed_slices(x.reshape(b * t, *x.shape[2:])).reshape(b, t, -1)
        packed = nn.utils.rnn.pack_padded_sequence(z, lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, h = self.gru(packed)  # h: (layers * directions, B, hidden)
        if self.readout == "last":
            last = h[-2:] if self.gru.bidirectional else h[-1:]
            return torch.cat(list(last), dim=1)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True)  # (B, T, H)
        valid = (torch.arange(out.shape[1], device=out.device)[None, :]
                 < lengths.to(out.device)[:, None])[:, :, None]
        if self.readout == "max":
            return out.masked_fill(~valid, float("-inf")).amax(dim=1)
        return (out * valid).sum(dim=1) / valid.sum(dim=1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(x, lengths)))


def build_model(spec: dict[str, Any]) -> nn.Module:
    """The network of a spec (`DeepSettings.architecture`); unknown keys are an error."""
    spec = dict(spec)
    arch = spec.pop("arch")
    args = {"in_channels": spec.pop("in_channels"), "input_size": spec.pop("input_size"),
            "n_outputs": spec.pop("n_outputs")}
    classes = {"cnn": SmallCNN, "resnet18": ResNet, "autoencoder": ConvAutoencoder,
               "gru": SliceGRU}
    if arch not in classes:
        raise ValueError(f"unknown architecture {arch!r}; known: {sorted(classes)}")
    return classes[arch](**args, **spec)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def embedding_dim(spec: dict[str, Any]) -> int:
    """Length of `embed(x)` (the GRU: of its per-slice embeddings) for a spec, without
    building the network."""
    arch = spec["arch"]
    if arch == "cnn":
        return int(spec["widths"][-1])
    if arch == "resnet18":
        return int(spec["width"]) * 2 ** (len(spec["blocks"]) - 1)
    if arch == "autoencoder":
        return int(spec["latent_dim"])
    if arch == "gru":
        return int(spec["encoder_widths"][-1])
    raise ValueError(f"unknown architecture {arch!r}")
