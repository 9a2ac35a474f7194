"""What a device can do: nominal peak FLOP/s by device kind, a measured CPU peak, peak memory.

Nominal peaks are dense (no sparsity) per device, in FLOP/s, for the compute dtype the step uses:
bfloat16 on the matrix units, float32 as the accelerator runs JAX's default-precision float32 matmuls
(TF32 on NVIDIA Ampere and later, bf16 passes on TPUs). The H100/H200 value is a sustained ~800
TFLOP/s (the SXM data sheet says 989). CPUs have no entry: their peak is measured
with a matmul (`measured_matmul_flops`).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

# (substring of jax.Device.device_kind, {compute dtype: peak FLOP/s}); the first match wins.
NOMINAL_PEAK_FLOPS = (
    ("H200", {"bfloat16": 800e12, "float32": 400e12}),
    ("H100", {"bfloat16": 800e12, "float32": 400e12}),
    ("A100", {"bfloat16": 312e12, "float32": 156e12}),
    ("L4", {"bfloat16": 121e12, "float32": 60e12}),
    ("V100", {"bfloat16": 15.7e12, "float32": 15.7e12}),  # no bf16 matrix units
    ("TPU v6", {"bfloat16": 918e12, "float32": 918e12}),
    ("TPU v5p", {"bfloat16": 459e12, "float32": 459e12}),
    ("TPU v5", {"bfloat16": 197e12, "float32": 197e12}),  # v5e / v5 lite
    ("TPU v4", {"bfloat16": 275e12, "float32": 275e12}),
)


def nominal_peak_flops(device: jax.Device, compute_dtype: str) -> float | None:
    """Data-sheet peak FLOP/s of one device for 'float32' or 'bfloat16' compute; None if unknown."""
    for kind, peaks in NOMINAL_PEAK_FLOPS:
        if kind.lower() in device.device_kind.lower():
            return peaks[compute_dtype]
    return None


def measured_matmul_flops(
    device: jax.Device, compute_dtype: str, size: int = 1024, seconds: float = 2.0, windows: int = 5
) -> float:
    """FLOP/s of square `size` matmuls in `compute_dtype` on one device (a practical peak, e.g. for CPUs).

    The best of `windows` timing windows over `seconds` in all: the least disturbed by other work.
    """
    dtype = jnp.dtype(compute_dtype)
    a = jax.device_put(jnp.ones((size, size), dtype), device)
    matmul = jax.jit(lambda x: x @ x * jnp.asarray(1e-3, dtype))
    jax.block_until_ready(matmul(a))
    best = 0.0
    for _ in range(windows):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / windows:
            a = matmul(a)
            count += 1
        jax.block_until_ready(a)
        best = max(best, 2 * size**3 * count / (time.perf_counter() - start))
    return best


def peak_flops(device: jax.Device, compute_dtype: str) -> tuple[float, str]:
    """(peak FLOP/s of one device, 'nominal' or 'measured'): the table, else a matmul measurement."""
    nominal = nominal_peak_flops(device, compute_dtype)
    if nominal is not None:
        return nominal, "nominal"
    return measured_matmul_flops(device, compute_dtype), "measured"


def peak_memory_in_use(device: jax.Device) -> int | None:
    """Peak bytes the allocator has held on the device since the process started; None on CPUs."""
    return (device.memory_stats() or {}).get("peak_bytes_in_use")
