"""Analytic FLOPs of the networks (convolutions and dense layers, FLOPs = 2 x multiply-adds).

An independent count from the architecture, to set beside XLA's cost analysis; docs/flop_model.md
tabulates it for the official networks. Resampling convolutions cost what their form computes: 'naive' upsample+conv
runs the 3x3 kernel on the upsampled map (9 taps per output pixel), the fused 'transposed' and
'subpixel' forms need 4 taps per output pixel; D's 'naive' conv+pool convolves at full resolution
(9 taps per input pixel), the fused 'strided' form needs 16 taps per output pixel (4 per input pixel).
"""

from __future__ import annotations

from pggan.model import networks

# One WGAN-GP training iteration per real image ~ 4 G forwards + 14 D forwards (docs/flop_model.md):
# D step: G fwd, D(real) and D(fake) fwd + bwd, the gradient penalty (fwd, input gradient, double
# backward); G step: G fwd + bwd through D fwd + bwd.
G_FORWARDS_PER_ITERATION = 4
D_FORWARDS_PER_ITERATION = 14


def _conv(cin: int, cout: int, taps: int, pixels: int) -> int:
    return 2 * cin * cout * taps * pixels


def generator_forward_flops(spec: networks.ModelSpec, resolution: int) -> int:
    """FLOPs of one generator forward pass for one image at an active resolution (fade included)."""
    level = networks.level_of(resolution, spec)
    c = spec.channels
    flops = 2 * (spec.latent_size + spec.label_size) * 16 * c(1) + _conv(c(1), c(1), 9, 16)
    upsample_taps = 9 if spec.upsample_impl == "naive" else 4
    for i in range(1, level + 1):
        pixels = (4 << i) ** 2
        flops += _conv(c(i), c(i + 1), upsample_taps, pixels) + _conv(c(i + 1), c(i + 1), 9, pixels)
    flops += _conv(c(level + 1), spec.num_channels, 1, resolution**2)
    if level > 0:
        flops += _conv(c(level), spec.num_channels, 1, (resolution // 2) ** 2)
    return flops


def discriminator_forward_flops(spec: networks.ModelSpec, resolution: int) -> int:
    """FLOPs of one discriminator forward pass for one image at an active resolution (fade included)."""
    level = networks.level_of(resolution, spec)
    c = spec.channels
    flops = _conv(spec.num_channels, c(level + 1), 1, resolution**2)
    fused = spec.downsample_impl == "strided" and spec.d_downsample_order == "conv_pool_act"
    for i in range(level, 0, -1):
        pixels = (4 << i) ** 2
        flops += _conv(c(i + 1), c(i + 1), 9, pixels) + _conv(c(i + 1), c(i), 4 if fused else 9, pixels)
    if level > 0:
        flops += _conv(spec.num_channels, c(level), 1, (resolution // 2) ** 2)
    mbstd = 1 if spec.mbstd_group_size > 1 else 0
    flops += _conv(c(1) + mbstd, c(1), 9, 16) + 2 * 16 * c(1) * c(0) + 2 * c(0) * (spec.critic_size + spec.label_size)
    return flops


def iteration_flops_per_image(spec: networks.ModelSpec, resolution: int) -> int:
    """FLOPs of one training iteration (D step with gradient penalty + G step) per real image."""
    return G_FORWARDS_PER_ITERATION * generator_forward_flops(
        spec, resolution
    ) + D_FORWARDS_PER_ITERATION * discriminator_forward_flops(spec, resolution)
