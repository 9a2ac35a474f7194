"""Speed of the compiled training step at one resolution, on synthetic data held on the devices.

`measure_step` compiles the step function of one schedule round exactly as training does
(`TrainStep.call_fn`: D step with gradient penalty, G step, EMA update, `repeats_per_call` minibatch
repeats per call, donated state), reads XLA's cost and memory analyses from the compiled program,
then runs whole rounds through `TrainStep.round_fn` the way the training loop does, with a random
uint8 "level" sampled inside the step (no dataset files, no host input pipeline).
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp

from pggan import parallel, train_step
from pggan.benchmarks import devices, model_flops

HOST_PROBE_ROUNDS = 3

@dataclasses.dataclass(frozen=True)
class StepResult:
    """One resolution's numbers (all devices together unless marked per device).

    img_per_s: real images per second (D minibatches, the unit of kimg) in steady state.
    compile_s: trace + compile of one call. ms_per_iteration: one minibatch repeat (d_repeats D steps,
    one G step, EMA updates). host_ms_per_iteration: Python time to issue it with the device idle
    (the fewest of HOST_PROBE_ROUNDS rounds; on a CPU backend the device work competes for the same
    cores); training hides it whenever it is shorter than the device time.
    xla_gflop_per_img: XLA's cost analysis of the compiled call per real image; model_gflop_per_img:
    the analytic conv/dense count (`model_flops`). tflops: achieved, from XLA's count.
    utilisation: tflops / (peak_tflops_per_device x devices); peak_source: 'nominal' or 'measured'.
    memory_bytes_per_device: the allocator's peak where the backend reports it ('device'), else
    XLA's estimate for the call: arguments + outputs + temporaries - aliased ('xla estimate').
    """

    resolution: int
    minibatch: int
    microbatches: int
    repeats_per_call: int
    compute_dtype: str
    upsample_impl: str
    downsample_impl: str
    num_devices: int
    compile_s: float
    img_per_s: float
    ms_per_iteration: float
    host_ms_per_iteration: float
    xla_gflop_per_img: float
    model_gflop_per_img: float
    tflops: float
    peak_tflops_per_device: float
    peak_source: str
    utilisation: float
    memory_bytes_per_device: int
    memory_source: str


def synthetic_level(mesh: jax.sharding.Mesh, resolution: int, channels: int, num_examples: int, seed: int = 0):
    """Random uint8 images [num_examples, r, r, channels] and int32 zero labels, replicated on the mesh."""
    def make():
        images = jax.random.randint(jax.random.key(seed), (num_examples, resolution, resolution, channels), 0, 256)
        return images.astype(jnp.uint8), jnp.zeros((num_examples,), jnp.int32)

    return jax.jit(make, out_shardings=parallel.replicated(mesh))()


def _round_scalars(round_index: int, seed: int = 0) -> tuple:
    """alpha (mid-fade: both branches are computed anyway), g_lr, d_lr, ema_beta and the round key."""
    return (jnp.float32(0.5), jnp.float32(1e-3), jnp.float32(1e-3), jnp.float32(0.999),
            jax.random.fold_in(jax.random.key(seed), round_index))


def _memory_estimate(compiled) -> int:
    stats = compiled.memory_analysis()
    return int(stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
               - stats.alias_size_in_bytes)


def measure_step(step: train_step.TrainStep, resolution: int, minibatch: int, *, iterations: int = 20,
                 peak: tuple[float, str] | None = None, seed: int = 0) -> StepResult:
    """Compiles and times the training step of `step` at one resolution and global minibatch.

    Args:
      step: the TrainStep (model, loss, step settings, mesh) to measure.
      resolution: active resolution; minibatch: global minibatch (a multiple of the device count).
      iterations: timed minibatch repeats, rounded up to whole rounds (after one warm-up round).
      peak: (peak FLOP/s per device, source); None takes `devices.peak_flops` of the first device.
      seed: parameters and synthetic data.

    Returns:
      A StepResult. Raises ValueError for an impossible resolution or minibatch.
    """
    mesh, spec, config = step.mesh, step.spec, step.config
    num_devices = mesh.size
    if minibatch % num_devices:
        raise ValueError(f"minibatch {minibatch} does not divide over {num_devices} devices")
    per_call = step.repeats_per_call()
    d_steps = config.minibatch_repeats * config.d_repeats
    level = synthetic_level(mesh, resolution, spec.num_channels, max(64, 2 * minibatch), seed)
    state = step.init_state(seed)
    position = jnp.uint32(0)

    start = time.perf_counter()
    compiled = step.call_fn(resolution, minibatch, on_device_data=True).lower(
        state, *level, position, *_round_scalars(0, seed), jnp.int32(0)).compile()
    compile_s = time.perf_counter() - start
    images_per_call_per_device = per_call * config.d_repeats * minibatch // num_devices
    xla_flops_per_img = compiled.cost_analysis()["flops"] / images_per_call_per_device

    round_fn = step.round_fn(resolution, minibatch, on_device_data=True)
    state, _ = round_fn(state, *level, position, *_round_scalars(0, seed))  # warm-up (jit cache hit)
    jax.block_until_ready(state)
    rounds = -(-iterations // config.minibatch_repeats)
    start = time.perf_counter()
    for index in range(1, rounds + 1):
        state, _ = round_fn(state, *level, jnp.uint32(index * d_steps * minibatch), *_round_scalars(index, seed))
    jax.block_until_ready(state)
    seconds = time.perf_counter() - start
    issue_seconds = []  # host time to issue one round while the device is idle
    for index in range(rounds + 1, rounds + 1 + HOST_PROBE_ROUNDS):
        jax.block_until_ready(state)
        call_start = time.perf_counter()
        state, _ = round_fn(state, *level, jnp.uint32(index * d_steps * minibatch), *_round_scalars(index, seed))
        issue_seconds.append(time.perf_counter() - call_start)
    jax.block_until_ready(state)

    timed_iterations = rounds * config.minibatch_repeats
    img_per_s = timed_iterations * config.d_repeats * minibatch / seconds
    device = mesh.devices.flat[0]
    peak_flops, peak_source = peak or devices.peak_flops(device, spec.compute_dtype)
    tflops = xla_flops_per_img * img_per_s / 1e12
    memory = devices.peak_memory_in_use(device)
    return StepResult(
        resolution=resolution, minibatch=minibatch,
        microbatches=step.microbatches(resolution, minibatch // num_devices), repeats_per_call=per_call,
        compute_dtype=spec.compute_dtype, upsample_impl=spec.upsample_impl, downsample_impl=spec.downsample_impl,
        num_devices=num_devices, compile_s=compile_s, img_per_s=img_per_s,
        ms_per_iteration=1000 * seconds / timed_iterations, host_ms_per_iteration=1000 * min(issue_seconds) / config.minibatch_repeats,
        xla_gflop_per_img=xla_flops_per_img / 1e9,
        model_gflop_per_img=model_flops.iteration_flops_per_image(spec, resolution) / 1e9,
        tflops=tflops, peak_tflops_per_device=peak_flops / 1e12, peak_source=peak_source,
        utilisation=tflops * 1e12 / (peak_flops * num_devices),
        memory_bytes_per_device=int(memory) if memory is not None else _memory_estimate(compiled),
        memory_source="device" if memory is not None else "xla estimate")


def results_table(results: list[StepResult]) -> str:
    """A fixed-width text table of step results, one row per result."""
    header = (f"{'res':>5} {'batch':>6} {'micro':>5} {'dtype':>8} {'up/down':>18} {'compile s':>9} {'img/s':>10} "
              f"{'ms/iter':>9} {'host ms':>8} {'GFLOP/img':>10} {'model':>8} {'TFLOP/s':>8} {'util':>7} {'mem MiB':>9}")
    rows = [header]
    for r in results:
        rows.append(
            f"{r.resolution:>5} {r.minibatch:>6} {r.microbatches:>5} {r.compute_dtype:>8} "
            f"{r.upsample_impl + '/' + r.downsample_impl:>18} {r.compile_s:>9.1f} {r.img_per_s:>10.1f} "
            f"{r.ms_per_iteration:>9.2f} {r.host_ms_per_iteration:>8.3f} {r.xla_gflop_per_img:>10.3f} "
            f"{r.model_gflop_per_img:>8.3f} {r.tflops:>8.3f} {100 * r.utilisation:>6.1f}% "
            f"{r.memory_bytes_per_device / 2**20:>9.1f}")
    return "\n".join(rows)


def as_json(results: list[StepResult]) -> list[dict]:
    """The results as JSON-ready dicts (field name -> value)."""
    return [dataclasses.asdict(r) for r in results]

