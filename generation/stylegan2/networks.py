"""StyleGAN2 generator G and residual discriminator in plain PyTorch (Karras et al. 2020).

Only differentiable stock ops (grouped `conv2d`, depthwise `conv_transpose2d`), so R1 and the
path-length penalty can take double backward and the refiner can pass per-sample weight
offsets: every modulated conv runs the fused (grouped, per-sample weight) path.
Resampling uses the [1, 3, 3, 1] filter: upsampling as a depthwise stride-2 transposed conv
with gain 4, downsampling as a depthwise blur with stride 2 ("blur-pool") before the conv.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from generation.stylegan2.config import BASE_RESOLUTION, DiscriminatorConfig, GeneratorConfig

NOISE_MODES = ("const", "random")


def blur_filter(taps: tuple[int, ...]) -> torch.Tensor:
    """Normalised separable 2-D filter [k, k] from 1-D taps."""
    line = torch.tensor(taps, dtype=torch.float32)
    kernel = torch.outer(line, line)
    return kernel / kernel.sum()


def upsample_2x(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, 2H, 2W]: zero insertion then the FIR filter with gain 4."""
    channels = x.shape[1]
    taps = kernel.shape[-1]
    weight = (kernel * 4).to(x.dtype).expand(channels, 1, taps, taps)
    return F.conv_transpose2d(x, weight, stride=2, padding=(taps - 2) // 2, groups=channels)


def downsample_2x(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, H/2, W/2]: the FIR filter evaluated at stride 2."""
    channels = x.shape[1]
    taps = kernel.shape[-1]
    weight = kernel.to(x.dtype).expand(channels, 1, taps, taps)
    return F.conv2d(x, weight, stride=2, padding=(taps - 2) // 2, groups=channels)


class EqualLinear(nn.Module):
    """Fully connected layer with equalised learning rate (weights N(0,1)/lr_mul, scaled at run time)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.bias_gain = lr_mul
        self.activation = activation  # (leaky-ReLU slope, gain) or None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, in] -> [B, out]
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        if self.activation is not None:
            slope, gain = self.activation
            x = F.leaky_relu(x, slope) * gain
        return x


class EqualConv2d(nn.Module):
    """Plain conv with equalised learning rate, optional FIR downsampling before it, optional activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        bias: bool = True,
        downsample_kernel: torch.Tensor | None = None,
        activation: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2
        self.activation = activation
        if downsample_kernel is not None:
            self.register_buffer("downsample_kernel", downsample_kernel, persistent=False)
        else:
            self.downsample_kernel = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C_in, H, W] -> [B, C_out, H', W']
        if self.downsample_kernel is not None:
            x = downsample_2x(x, self.downsample_kernel)
        x = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.padding)
        if self.activation is not None:
            slope, gain = self.activation
            x = F.leaky_relu(x, slope) * gain
        return x


class ModulatedConv2d(nn.Module):
    """Style-modulated conv: per-sample weight theta * (1 + Delta) * s, optionally demodulated.

    Runs as one grouped conv over the batch so that each sample can carry its own weight
    offset Delta (HyperStyle), broadcastable to [B, C_out, C_in, k, k].
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        config: GeneratorConfig,
        *,
        demodulate: bool,
        upsample: bool,
    ) -> None:
        super().__init__()
        self.affine = EqualLinear(config.w_dim, in_channels, bias_init=config.style_bias_init)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.demodulate = demodulate
        self.demodulate_eps = config.demodulate_eps
        self.upsample = upsample
        self.register_buffer("resample_kernel", blur_filter(config.blur_taps), persistent=False)

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return tuple(self.weight.shape)  # (C_out, C_in, k, k)

    def check_delta(self, delta: torch.Tensor, batch: int) -> None:
        target = (batch, *self.weight_shape)
        try:
            broadcast = torch.broadcast_shapes(delta.shape, target)
        except RuntimeError:
            broadcast = None
        if broadcast != target:
            raise ValueError(f"weight delta of shape {tuple(delta.shape)} does not broadcast to {target}")

    def forward(self, x: torch.Tensor, w: torch.Tensor, delta: torch.Tensor | None = None) -> torch.Tensor:
        # x [B, C_in, H, W], w [B, w_dim], delta broadcastable to [B, C_out, C_in, k, k]
        batch, in_channels, _, _ = x.shape
        out_channels, _, k, _ = self.weight_shape
        styles = self.affine(w)  # [B, C_in]
        weight = (self.weight * self.weight_gain).unsqueeze(0)  # [1, C_out, C_in, k, k]
        if delta is not None:
            self.check_delta(delta, batch)
            weight = weight * (1 + delta)
        weight = weight * styles[:, None, :, None, None]  # [B, C_out, C_in, k, k]
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.square().sum(dim=(2, 3, 4), keepdim=True) + self.demodulate_eps)
        if self.upsample:
            x = upsample_2x(x, self.resample_kernel)
        height, width = x.shape[-2:]
        x = x.reshape(1, batch * in_channels, height, width)
        weight = weight.expand(batch, -1, -1, -1, -1).reshape(batch * out_channels, in_channels, k, k)
        out = F.conv2d(x, weight, padding=k // 2, groups=batch)
        return out.reshape(batch, out_channels, height, width)  # [B, C_out, H', W']


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv + scaled per-pixel noise + bias + leaky ReLU (rosinality's StyledConv)."""

    def __init__(self, in_channels: int, out_channels: int, resolution: int, config: GeneratorConfig, *,
                 upsample: bool) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, config, demodulate=True, upsample=upsample)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.activation = (config.lrelu_slope, config.activation_gain)

    def forward(self, x: torch.Tensor, w: torch.Tensor, delta: torch.Tensor | None, noise_mode: str) -> torch.Tensor:
        x = self.conv(x, w, delta)  # [B, C_out, H, W]
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        else:
            noise = self.noise_const
        x = x + noise * self.noise_strength + self.bias[None, :, None, None]
        slope, gain = self.activation
        return F.leaky_relu(x, slope) * gain


class ToRGB(nn.Module):
    """1x1 modulated (not demodulated) conv to RGB plus bias, no activation."""

    def __init__(self, in_channels: int, config: GeneratorConfig) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, config.image_channels, 1, config, demodulate=False, upsample=False)
        self.bias = nn.Parameter(torch.zeros(config.image_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor, delta: torch.Tensor | None) -> torch.Tensor:
        return self.conv(x, w, delta) + self.bias[None, :, None, None]  # [B, 3, H, W]


class MappingNetwork(nn.Module):
    """z -> w: pixel norm, then `mapping_layers` equalised FC layers at lr multiplier 0.01.

    `w_avg` tracks the mean w (EMA in training, `estimate_w_avg` before export) for truncation
    and as the encoder's starting point.
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        activation = (config.lrelu_slope, config.activation_gain)
        widths = [config.z_dim] + [config.w_dim] * config.mapping_layers
        self.layers = nn.Sequential(*[
            EqualLinear(i, o, lr_mul=config.mapping_lr_mul, activation=activation) for i, o in zip(widths, widths[1:])
        ])
        self.register_buffer("w_avg", torch.zeros(config.w_dim))

    def forward(self, z: torch.Tensor, truncation: float = 1.0, update_w_avg: bool = False) -> torch.Tensor:
        # z [B, z_dim] -> w [B, w_dim]
        if z.dim() != 2 or z.shape[1] != self.config.z_dim:
            raise ValueError(f"z must be [B, {self.config.z_dim}], got {tuple(z.shape)}")
        z = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + self.config.pixel_norm_eps)
        w = self.layers(z)
        if update_w_avg:
            self.w_avg.copy_(w.detach().mean(dim=0).lerp(self.w_avg, self.config.w_avg_beta))
        if truncation != 1.0:
            w = self.w_avg.lerp(w, truncation)
        return w

    @torch.no_grad()
    def estimate_w_avg(self, num_samples: int, seed: int, batch_size: int = 1000) -> torch.Tensor:
        """Set `w_avg` to the mean of mapping(z) over `num_samples` z drawn from their own seeded RNG
        (so exporting mid-run leaves the training RNG, and an exact resume, untouched)."""
        device = self.w_avg.device
        generator = torch.Generator(device=device).manual_seed(seed)
        total = torch.zeros_like(self.w_avg)
        for start in range(0, num_samples, batch_size):
            count = min(batch_size, num_samples - start)
            z = torch.randn(count, self.config.z_dim, device=device, generator=generator)
            total += self(z).sum(dim=0)
        self.w_avg.copy_(total / num_samples)
        return self.w_avg


class SynthesisNetwork(nn.Module):
    """ws -> image: learned 4x4 constant, doubling blocks (up-conv, conv, toRGB), skip RGB sum.

    Layer names, in the rosinality/HyperStyle order: conv4, torgb4, then for each resolution
    r >= 8: conv{r}_up, conv{r}, torgb{r}. `weight_deltas` keys are these names.
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.num_ws = config.num_ws
        self.const = nn.Parameter(torch.randn(config.channels(BASE_RESOLUTION), BASE_RESOLUTION, BASE_RESOLUTION))
        self.register_buffer("resample_kernel", blur_filter(config.blur_taps), persistent=False)
        layers: dict[str, nn.Module] = {}
        latent_index: dict[str, int] = {}
        base_channels = config.channels(BASE_RESOLUTION)
        layers[f"conv{BASE_RESOLUTION}"] = SynthesisLayer(base_channels, base_channels, BASE_RESOLUTION, config,
                                                          upsample=False)
        layers[f"torgb{BASE_RESOLUTION}"] = ToRGB(base_channels, config)
        latent_index[f"conv{BASE_RESOLUTION}"], latent_index[f"torgb{BASE_RESOLUTION}"] = 0, 1
        for block in range(1, config.log2_resolution - 1):
            resolution = BASE_RESOLUTION * 2**block
            in_channels, out_channels = config.channels(resolution // 2), config.channels(resolution)
            layers[f"conv{resolution}_up"] = SynthesisLayer(in_channels, out_channels, resolution, config, upsample=True)
            layers[f"conv{resolution}"] = SynthesisLayer(out_channels, out_channels, resolution, config, upsample=False)
            layers[f"torgb{resolution}"] = ToRGB(out_channels, config)
            latent_index[f"conv{resolution}_up"] = 2 * block - 1
            latent_index[f"conv{resolution}"] = 2 * block
            latent_index[f"torgb{resolution}"] = 2 * block + 1
        self.layers = nn.ModuleDict(layers)
        self.latent_index = latent_index

    def weight_shapes(self) -> dict[str, tuple[int, int, int, int]]:
        """Ordered layer name -> (C_out, C_in, k, k) of every modulated conv, toRGB included."""
        return {name: layer.conv.weight_shape for name, layer in self.layers.items()}

    def broadcast_ws(self, ws: torch.Tensor) -> torch.Tensor:
        """[B, w_dim] or [B, num_ws, w_dim] -> [B, num_ws, w_dim]."""
        w_dim = self.config.w_dim
        if ws.dim() == 2 and ws.shape[1] == w_dim:
            return ws.unsqueeze(1).expand(-1, self.num_ws, -1)
        if ws.dim() == 3 and ws.shape[1:] == (self.num_ws, w_dim):
            return ws
        raise ValueError(f"ws must be [B, {w_dim}] or [B, {self.num_ws}, {w_dim}], got {tuple(ws.shape)}")

    def forward(
        self,
        ws: torch.Tensor,
        weight_deltas: dict[str, torch.Tensor] | None = None,
        noise_mode: str = "const",
    ) -> torch.Tensor:
        # ws [B, w_dim] | [B, num_ws, w_dim] -> image [B, 3, R, R]
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        deltas = weight_deltas or {}
        unknown = sorted(set(deltas) - set(self.layers))
        if unknown:
            raise ValueError(f"unknown weight_deltas layers {unknown}; known: {list(self.layers)}")
        ws = self.broadcast_ws(ws)
        x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)  # [B, C4, 4, 4]
        image = None
        for name, layer in self.layers.items():
            w = ws[:, self.latent_index[name]]
            if isinstance(layer, ToRGB):
                rgb = layer(x, w, deltas.get(name))
                image = rgb if image is None else upsample_2x(image, self.resample_kernel) + rgb
            else:
                x = layer(x, w, deltas.get(name), noise_mode)
        return image


class Generator(nn.Module):
    """G = synthesis(mapping(z)); the EMA copy of this is what the bundle ships."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.num_ws = config.num_ws
        self.mapping = MappingNetwork(config)
        self.synthesis = SynthesisNetwork(config)

    def forward(
        self,
        z: torch.Tensor,
        truncation: float = 1.0,
        noise_mode: str = "const",
        weight_deltas: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        # z [B, z_dim] -> image [B, 3, R, R] in about [-1, 1]
        return self.synthesis(self.mapping(z, truncation), weight_deltas, noise_mode)


class DiscriminatorBlock(nn.Module):
    """Residual block: 3x3 conv, blur-pool + 3x3 conv, with a blur-pool + 1x1 skip; sum * 1/sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int, config: DiscriminatorConfig) -> None:
        super().__init__()
        activation = (config.lrelu_slope, config.activation_gain)
        kernel = blur_filter(config.blur_taps)
        self.conv0 = EqualConv2d(in_channels, in_channels, 3, activation=activation)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, downsample_kernel=kernel, activation=activation)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False, downsample_kernel=kernel.clone())
        self.residual_gain = config.residual_gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C_in, H, W] -> [B, C_out, H/2, W/2]
        return (self.conv1(self.conv0(x)) + self.skip(x)) * self.residual_gain


class MinibatchStdDev(nn.Module):
    """Append the std of features over groups of consecutive samples as extra channels.

    Groups are consecutive, so a batch built as [reals; fakes] never mixes the two in a group.
    """

    def __init__(self, group_size: int, num_channels: int, eps: float) -> None:
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, C + F, H, W]
        batch, channels, height, width = x.shape
        group = min(self.group_size, batch)
        if batch % group:
            raise ValueError(f"batch {batch} is not divisible by the minibatch-stddev group size {group}")
        f = self.num_channels
        y = x.reshape(batch // group, group, f, channels // f, height, width)
        y = (y - y.mean(dim=1, keepdim=True)).square().mean(dim=1)  # [B/G, F, C/F, H, W]
        y = (y + self.eps).sqrt().mean(dim=(2, 3, 4))  # [B/G, F]
        y = y[:, None, :, None, None].expand(-1, group, -1, height, width).reshape(batch, f, height, width)
        return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator: fromRGB, one residual block per resolution down to 8, epilogue at 4."""

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        activation = (config.lrelu_slope, config.activation_gain)
        self.from_rgb = EqualConv2d(config.image_channels, config.channels(config.resolution), 1, activation=activation)
        blocks = []
        resolution = config.resolution
        while resolution > BASE_RESOLUTION:
            blocks.append(DiscriminatorBlock(config.channels(resolution), config.channels(resolution // 2), config))
            resolution //= 2
        self.blocks = nn.Sequential(*blocks)
        channels = config.channels(BASE_RESOLUTION)
        self.mbstd = MinibatchStdDev(config.mbstd_group_size, config.mbstd_channels, config.mbstd_eps)
        self.epilogue_conv = EqualConv2d(channels + config.mbstd_channels, channels, 3, activation=activation)
        self.fc = EqualLinear(channels * BASE_RESOLUTION**2, channels, activation=activation)
        self.out = EqualLinear(channels, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:  # [B, 3, R, R] -> logits [B]
        expected = (self.config.image_channels, self.config.resolution, self.config.resolution)
        if image.dim() != 4 or tuple(image.shape[1:]) != expected:
            raise ValueError(f"discriminator expects [B, {expected[0]}, {expected[1]}, {expected[2]}], got {tuple(image.shape)}")
        x = self.blocks(self.from_rgb(image))  # [B, C4, 4, 4]
        x = self.epilogue_conv(self.mbstd(x))
        return self.out(self.fc(x.flatten(1))).squeeze(1)
