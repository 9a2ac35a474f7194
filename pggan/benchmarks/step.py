"""Speed of the compiled training step at one resolution, on synthetic data held on the devices.

`PreparedStep` compiles the step function of one schedule round exactly as training does
(`TrainStep.call_fn`: D step with gradient penalty, G step, EMA update, `repeats_per_call` minibatch
repeats per call, donated state) and reads XLA's cost and memory analyses from the compiled program;
`measure_steps` then runs whole rounds through `TrainStep.round_fn` the way the training loop does,
with a random uint8 "level" sampled inside the step (no dataset files, no host input pipeline).
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp

from pggan import parallel
from pggan.benchmarks import devices
from pggan.model import flops as model_flops
from pggan.training import train_step
from pggan.training.step_updates import HeldLevel, RoundScalars

HOST_PROBE_ROUNDS = 3


@dataclasses.dataclass(frozen=True)
class StepResult:
    """One resolution's numbers (all devices together unless marked per device).

    img_per_s: real images per second (D minibatches, the unit of kimg) in steady state.
    compile_s: trace + compile of one call. ms_per_iteration: one minibatch repeat (d_repeats D steps,
    one G step, EMA updates). cpu_ms_per_iteration: CPU time of this process (all threads) per
    iteration; on a CPU backend shared with other work, a steadier figure than the wall time.
    host_ms_per_iteration: Python time to issue an iteration with the device idle (the fewest of
    HOST_PROBE_ROUNDS rounds; on a CPU backend the device work competes for the same cores);
    training hides it whenever it is shorter than the device time.
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
    cpu_ms_per_iteration: float
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


def _round_scalars(round_index: int, seed: int = 0) -> RoundScalars:
    """alpha (mid-fade: both branches are computed anyway), g_lr, d_lr, ema_beta and the round key."""
    return RoundScalars(
        jnp.float32(0.5),
        jnp.float32(1e-3),
        jnp.float32(1e-3),
        jnp.float32(0.999),
        jax.random.fold_in(jax.random.key(seed), round_index),
    )


def _memory_estimate(compiled) -> int:
    stats = compiled.memory_analysis()
    return int(
        stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes - stats.alias_size_in_bytes
    )


class PreparedStep:
    """A compiled training step at one resolution with its state and synthetic level, ready to time.

    Holds what the timing windows share: the donated state is threaded through every call, and the
    round index keeps advancing (fresh randomness, the data stream moving on, as in training).
    """

    def __init__(self, step: train_step.TrainStep, resolution: int, minibatch: int, seed: int = 0):
        """Builds the level and the state, compiles the call (timed) and runs one warm-up round.

        Raises ValueError when the minibatch does not divide over the devices.
        """
        mesh, spec = step.mesh, step.spec
        if minibatch % mesh.size:
            raise ValueError(f"minibatch {minibatch} does not divide over {mesh.size} devices")
        self.step, self.resolution, self.minibatch, self.seed = step, resolution, minibatch, seed
        self.level = synthetic_level(mesh, resolution, spec.num_channels, max(64, 2 * minibatch), seed)
        self.state = step.init_state(seed)
        start = time.perf_counter()
        compiled = (
            step.call_fn(resolution, minibatch, HeldLevel)
            .lower(self.state, self._data(0), _round_scalars(0, seed), jnp.int32(0))
            .compile()
        )
        self.compile_s = time.perf_counter() - start
        images_per_call_per_device = step.repeats_per_call() * step.config.d_repeats * minibatch // mesh.size
        self.xla_flops_per_img = compiled.cost_analysis()["flops"] / images_per_call_per_device
        self.memory_estimate = _memory_estimate(compiled)
        self.round_fn = step.round_fn(resolution, minibatch)  # a jit cache hit now
        self.rounds_run = 0
        self._run_round()  # warm-up
        jax.block_until_ready(self.state)

    def _data(self, rounds_run: int) -> HeldLevel:
        """The synthetic level at the stream position of round `rounds_run`."""
        config = self.step.config
        position = jnp.uint32(rounds_run * config.minibatch_repeats * config.d_repeats * self.minibatch)
        return HeldLevel(*self.level, position)

    def _run_round(self) -> None:
        self.state, _ = self.round_fn(
            self.state, self._data(self.rounds_run), _round_scalars(self.rounds_run, self.seed)
        )
        self.rounds_run += 1

    def time_rounds(self, rounds: int) -> tuple[float, float]:
        """(wall seconds, process CPU seconds) of `rounds` rounds issued back to back."""
        jax.block_until_ready(self.state)
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(rounds):
            self._run_round()
        jax.block_until_ready(self.state)
        return time.perf_counter() - start, time.process_time() - cpu_start

    def issue_seconds(self) -> float:
        """Host seconds to issue one round with the device idle (fewest of HOST_PROBE_ROUNDS)."""
        seconds = []
        for _ in range(HOST_PROBE_ROUNDS):
            jax.block_until_ready(self.state)
            start = time.perf_counter()
            self._run_round()
            seconds.append(time.perf_counter() - start)
        jax.block_until_ready(self.state)
        return min(seconds)


def measure_steps(
    prepared: list[PreparedStep],
    *,
    iterations: int = 20,
    windows: int = 1,
    peaks: dict[str, tuple[float, str]] | None = None,
) -> list[StepResult]:
    """Times prepared steps in `windows` interleaved windows and keeps each one's fastest window.

    Interleaving (A, B, A, B, ...) exposes every variant to the same slow drifts of a shared
    machine; the fastest window is the least disturbed one.

    Args:
      prepared: the steps to compare (e.g. one per convolution form), all at one resolution or not.
      iterations: training iterations (minibatch repeats) per window, rounded up to whole rounds.
      windows: timing windows per step.
      peaks: {compute dtype: (peak FLOP/s per device, source)}; missing dtypes are looked up with
        `devices.peak_flops` (a matmul measurement on CPUs) and added.
    """
    peaks = {} if peaks is None else peaks
    best = [None] * len(prepared)
    for _ in range(windows):
        for k, p in enumerate(prepared):
            rounds = -(-iterations // p.step.config.minibatch_repeats)
            seconds, cpu_seconds = p.time_rounds(rounds)
            per_iteration = (
                seconds / (rounds * p.step.config.minibatch_repeats),
                cpu_seconds / (rounds * p.step.config.minibatch_repeats),
            )
            best[k] = per_iteration if best[k] is None or per_iteration[0] < best[k][0] else best[k]
    for p in prepared:
        dtype = p.step.spec.compute_dtype
        if dtype not in peaks:
            peaks[dtype] = devices.peak_flops(p.step.mesh.devices.flat[0], dtype)
    return [
        _result(p, *timing, p.issue_seconds(), peaks[p.step.spec.compute_dtype]) for p, timing in zip(prepared, best)
    ]


def _result(
    p: PreparedStep, seconds: float, cpu_seconds: float, issue_seconds: float, peak: tuple[float, str]
) -> StepResult:
    """StepResult from per-iteration wall and CPU seconds and the host time to issue a round."""
    step, spec, config = p.step, p.step.spec, p.step.config
    num_devices = step.mesh.size
    img_per_s = config.d_repeats * p.minibatch / seconds
    device = step.mesh.devices.flat[0]
    peak_flops, peak_source = peak
    tflops = p.xla_flops_per_img * img_per_s / 1e12
    memory = devices.peak_memory_in_use(device)
    return StepResult(
        resolution=p.resolution,
        minibatch=p.minibatch,
        microbatches=config.microbatches(p.resolution, p.minibatch // num_devices, spec.mbstd_group_size),
        repeats_per_call=step.repeats_per_call(),
        compute_dtype=spec.compute_dtype,
        upsample_impl=spec.upsample_impl,
        downsample_impl=spec.downsample_impl,
        num_devices=num_devices,
        compile_s=p.compile_s,
        img_per_s=img_per_s,
        ms_per_iteration=1000 * seconds,
        cpu_ms_per_iteration=1000 * cpu_seconds,
        host_ms_per_iteration=1000 * issue_seconds / config.minibatch_repeats,
        xla_gflop_per_img=p.xla_flops_per_img / 1e9,
        model_gflop_per_img=model_flops.iteration_flops_per_image(spec, p.resolution) / 1e9,
        tflops=tflops,
        peak_tflops_per_device=peak_flops / 1e12,
        peak_source=peak_source,
        utilisation=tflops * 1e12 / (peak_flops * num_devices),
        memory_bytes_per_device=int(memory) if memory is not None else p.memory_estimate,
        memory_source="device" if memory is not None else "xla estimate",
    )


def results_table(results: list[StepResult]) -> str:
    """A fixed-width text table of step results, one row per result."""
    header = (
        f"{'res':>5} {'batch':>6} {'micro':>5} {'dtype':>8} {'up/down':>18} {'compile s':>9} {'img/s':>10} "
        f"{'ms/iter':>9} {'cpu ms':>9} {'host ms':>8} {'GFLOP/img':>10} {'model':>8} {'TFLOP/s':>8} "
        f"{'util':>7} {'mem MiB':>9}"
    )
    rows = [header]
    for r in results:
        rows.append(
            f"{r.resolution:>5} {r.minibatch:>6} {r.microbatches:>5} {r.compute_dtype:>8} "
            f"{r.upsample_impl + '/' + r.downsample_impl:>18} {r.compile_s:>9.1f} {r.img_per_s:>10.1f} "
            f"{r.ms_per_iteration:>9.2f} {r.cpu_ms_per_iteration:>9.2f} {r.host_ms_per_iteration:>8.3f} "
            f"{r.xla_gflop_per_img:>10.3f} {r.model_gflop_per_img:>8.3f} {r.tflops:>8.3f} {100 * r.utilisation:>6.1f}% "
            f"{r.memory_bytes_per_device / 2**20:>9.1f}"
        )
    return "\n".join(rows)


def as_json(results: list[StepResult]) -> list[dict]:
    """The results as JSON-ready dicts (field name -> value)."""
    return [dataclasses.asdict(r) for r in results]
