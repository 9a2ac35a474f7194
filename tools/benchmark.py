r"""Benchmarks: the training step, the input pipeline, the Inception, the generator, bf16 quality, the FLOP model.

One mode per call (default: the training step). Results print as a table and go to --json.

  # Training step per resolution (compile time, img/s, TFLOP/s, utilisation, memory) and the
  # projected wall time of the whole recipe when every resolution of its schedule is measured:
  python tools/benchmark.py --config=configs/quickstart.py --resolutions=4,8,16,32
  python tools/benchmark.py --config=configs/celebahq_1024.py --resolutions=4,8,16,32,64,128,256,512,1024 --dtype=bf16
  # Convolution forms (G's upsample+conv / D's conv+pool, penalty's double backward included):
  python tools/benchmark.py --config=configs/quickstart.py --resolutions=32 \
      --impls=naive/naive,transposed/naive,subpixel/naive,naive/strided,transposed/strided,subpixel/strided
  # Where the time goes: XLA's time per op kind in one traced round (and the trace, for TensorBoard):
  python tools/benchmark.py --config=configs/quickstart.py --resolutions=32 --profile_dir=/tmp/pggan_profile
  # Host input pipeline; Inception feature extraction; sampling; bf16-vs-f32 final SWD; FLOP-model projection:
  python tools/benchmark.py --input_only --resolutions=32,256,1024
  python tools/benchmark.py --inception --resolutions=32,256 --batch=64
  python tools/benchmark.py --generation --config=configs/celebahq_1024.py --resolutions=32,128
  python tools/benchmark.py --quality --config=configs/quickstart.py --seeds=0,1,2
  python tools/benchmark.py --real_floor --config=configs/quickstart.py --seeds=0,1,2  # its real-vs-real floor
  python tools/benchmark.py --flop_model --config=configs/celebahq_1024.py --peak_tflops=800 --utilisation=0.4

Step mode trains on synthetic images held on the devices (no dataset needed) with the recipe's
minibatch for the devices present (or --batch). Input mode reads a prepared dataset (default:
synthetic images prepared once into --data_dir) through the training input pipeline and reports
images/s and the process's CPU time per image.
"""

import dataclasses
import datetime
import json
import os
import platform
import sys
import tempfile
import time

import flax
import jax
import jaxlib
from absl import flags
from tqdm import tqdm

from pggan import dependencies

# First: the modules below need it too, and a missing package is reported in one line.
config_flags = dependencies.import_or_exit("ml_collections.config_flags", "reading recipe files (configs/*.py)")

from pggan import parallel  # noqa: E402
from pggan.benchmarks import profile as op_profile  # noqa: E402
from pggan.benchmarks import step as step_benchmark  # noqa: E402
from pggan.cli.runner import UsageError, program_main, run_program  # noqa: E402
from pggan.model import flops as model_flops  # noqa: E402
from pggan.training import (  # noqa: E402
    compilation_cache,
    microbatching,
    run_length,
    train_step,
)
from pggan.training.config import TrainingConfig  # noqa: E402
from pggan.training.step_updates import StepConfig  # noqa: E402
from pggan.training.validation import schedule_for_devices  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "Recipe (configs/*.py) for the step, quality, real-floor and FLOP-model modes; override fields with "
    "--config.<field>=<value>.",
)
_INPUT_ONLY = flags.DEFINE_bool("input_only", False, "Mode: measure the host input pipeline only.")
_INCEPTION = flags.DEFINE_bool("inception", False, "Mode: measure Inception feature extraction (random weights).")
_GENERATION = flags.DEFINE_bool(
    "generation",
    False,
    "Mode: measure --config's generator as pggan-generate runs it (random weights, latents from and images "
    "to the host) at --resolutions (default: the model's).",
)
_QUALITY = flags.DEFINE_bool(
    "quality",
    False,
    "Mode: train --config in float32 and bfloat16 for each of --seeds "
    "and compare the final SWD (slow: whole training runs).",
)
_REAL_FLOOR = flags.DEFINE_bool(
    "real_floor",
    False,
    "Mode: the floor of the quality mode's final SWD: --config's real images against themselves "
    "(two random halves; all of them against a resample), for each of --seeds.",
)
_FLOP_MODEL = flags.DEFINE_bool(
    "flop_model",
    False,
    "Mode: no measurement; img/s per resolution and the recipe's "
    "wall time from the analytic FLOP count at --peak_tflops x --utilisation.",
)
_RESOLUTIONS = flags.DEFINE_list(
    "resolutions",
    [],
    "Resolutions to measure (default: the input mode's 32,128,1024; "
    "the step and FLOP-model modes: every resolution of the recipe's schedule).",
)
_BATCH = flags.DEFINE_integer(
    "batch",
    0,
    "Global batch. 0: step mode uses the recipe's minibatch for the devices "
    "present; input mode the official 8-GPU minibatch (4:512, 8:256, 16:128, 32:64, 64 "
    "and up: 32); Inception mode 64; generation mode pggan-generate's 8 per device.",
    lower_bound=0,
)
_DTYPE = flags.DEFINE_list(
    "dtype",
    [],
    "Compute dtype, bf16 or f32 (default: the recipe's model.compute_dtype); "
    "step mode takes a list (f32,bf16) and compares them; quality mode trains only these "
    "(default there: both). Parameters and Adam state stay float32.",
)
_IMPLS = flags.DEFINE_list(
    "impls",
    [],
    "Step mode: sweep of resampling forms UPSAMPLE/DOWNSAMPLE, e.g. "
    "naive/naive,transposed/strided,subpixel/strided (default: the recipe's).",
)
_REPEATS = flags.DEFINE_list(
    "repeats_per_call",
    ["0"],
    "Step mode: minibatch repeats per compiled call, one run "
    "per value (0: automatic, 1 on CPUs, the whole round elsewhere).",
)
_STEPS = flags.DEFINE_integer(
    "steps",
    20,
    "Step mode: training iterations per timing window (rounded up to whole rounds), after a warm-up round.",
    lower_bound=1,
)
_WINDOWS = flags.DEFINE_integer(
    "windows",
    3,
    "Step mode: timing windows per variant, interleaved between the "
    "variants of a resolution; the fastest counts (steadier on a shared machine).",
    lower_bound=1,
)
_PROFILE_DIR = flags.DEFINE_string(
    "profile_dir",
    "",
    "Step mode: also trace one round of each variant with jax.profiler into this folder (TensorBoard's "
    "profile plugin reads it) and print XLA's time per op kind ('' = no trace).",
)
_PEAK_TFLOPS = flags.DEFINE_float(
    "peak_tflops",
    0.0,
    "Peak TFLOP/s of one device for utilisation (0: the "
    "nominal value of known accelerators, a matmul measurement on CPUs).",
)
_UTILISATION = flags.DEFINE_float("utilisation", 0.4, "FLOP-model mode: assumed fraction of the peak.")
_DEVICES = flags.DEFINE_integer(
    "devices",
    0,
    "FLOP-model mode: device count the recipe's tables are chosen for (0: the devices present).",
    lower_bound=0,
)
_COMPILATION_CACHE = flags.DEFINE_string(
    "compilation_cache_dir",
    "",
    "Persistent compilation cache for step mode ('' = off, so compile times are real compiles).",
)
_JSON = flags.DEFINE_string(
    "json",
    os.path.join(tempfile.gettempdir(), "pggan_benchmark.json"),
    "Where to write the results as JSON ('' = nowhere).",
)
_DATASET = flags.DEFINE_string(
    "dataset",
    None,
    "Input mode: prepared dataset to read (its levels). Default: "
    "synthetic datasets prepared on first use, one per resolution.",
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir",
    os.path.join(tempfile.gettempdir(), "pggan_benchmark_data"),
    "Input mode: where the benchmark datasets are (prepared if missing).",
)
_SECONDS = flags.DEFINE_float("seconds", 5.0, "Input mode: measuring time per resolution, after warm-up.")
_NUM_THREADS = flags.DEFINE_integer("num_threads", 2, "Input mode: input pipeline reader threads.")
_PREFETCH = flags.DEFINE_integer("prefetch_batches", 4, "Input mode: input pipeline read-ahead, in batches.")
_NUM_EXAMPLES = flags.DEFINE_integer(
    "num_examples",
    0,
    "Input mode: images per synthetic dataset; 0: as many as take 1 GiB at that resolution, between 64 and 20,000.",
)
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Quality mode: training seeds per dtype.")
_RUNS_DIR = flags.DEFINE_string(
    "runs_dir",
    os.path.join(tempfile.gettempdir(), "pggan_quality"),
    "Quality mode: root of the runs' workdirs (finished runs are reused).",
)

OFFICIAL_MINIBATCH_8GPU = {4: 512, 8: 256, 16: 128, 32: 64}
WARMUP_BATCHES = 5


def _integers(flag, default: list[int] | None = None) -> list[int]:
    """The values of a list flag as ints (default when it is empty); UsageError for non-integers."""
    try:
        return [int(v) for v in flag.value] if flag.value else default
    except ValueError:
        raise UsageError(f"--{flag.name} takes comma-separated integers, got {','.join(flag.value)}") from None


def _resolutions(default: list[int]) -> list[int]:
    return _integers(_RESOLUTIONS, default)


def _config():
    if _CONFIG.value is None:
        raise UsageError("--config is required in this mode, e.g. --config=configs/quickstart.py")
    return _CONFIG.value


def _environment() -> dict:
    device = jax.devices()[0]
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "platform": device.platform,
        "device_kind": device.device_kind,
        "num_devices": jax.device_count(),
        "cpu_cores": os.cpu_count(),
        "load_average": os.getloadavg(),
        "host": platform.node(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
    }


def _write_json(mode: str, payload: dict) -> None:
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump({"mode": mode, **_environment(), **payload}, f, indent=1)
        print(f"JSON written to {_JSON.value}")


def _format_hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def _print_projection(stages, img_per_s: dict, compile_s: dict | None = None) -> dict:
    result = run_length.project_wall_time(stages, img_per_s, compile_s)
    print(f"{'res':>5} {'kimg':>10} {'img/s':>12} {'time':>12}")
    for resolution, entry in sorted(result["per_resolution"].items()):
        print(
            f"{resolution:>5} {entry['images'] / 1000:>10.1f} {img_per_s[resolution]:>12.1f} "
            f"{_format_hours(entry['seconds']):>12}"
        )
    print(
        f"total {_format_hours(result['total_s'])} (training {_format_hours(result['train_s'])}, "
        f"compiles {_format_hours(result['compile_s'])})"
    )
    return result


# ------------------------------------------------------------------------------------------- step mode

DTYPES = {"bf16": "bfloat16", "f32": "float32"}


def _compute_dtypes(config) -> list[str]:
    """--dtype as model.compute_dtype values (default: the recipe's)."""
    unknown = [d for d in _DTYPE.value if d not in DTYPES]
    if unknown:
        raise UsageError(f"--dtype takes bf16 and/or f32, got {','.join(unknown)}")
    return [DTYPES[d] for d in _DTYPE.value] or [config.model.compute_dtype]


def _step_config_variants(config) -> list:
    """(config, repeats_per_call) for every --dtype x --impls x --repeats_per_call combination."""
    impls = [impl.split("/") for impl in _IMPLS.value] or [[config.model.upsample_impl, config.model.downsample_impl]]
    variants = []
    for dtype in _compute_dtypes(config):
        for impl in impls:
            if len(impl) != 2:
                raise UsageError(
                    f"--impls entries are UPSAMPLE/DOWNSAMPLE, e.g. transposed/strided; got {'/'.join(impl)}"
                )
            for repeats in _integers(_REPEATS):
                variant = config.copy_and_resolve_references()
                variant.model.compute_dtype = dtype
                variant.model.upsample_impl, variant.model.downsample_impl = impl
                variants.append((variant, repeats))
    return variants


def _check_step_flags(spec, schedule, resolutions: list[int], num_devices: int) -> None:
    """UsageError for resolutions the model does not have or a --batch the devices cannot split."""
    wrong = [r for r in resolutions if r not in schedule.resolutions()]
    if wrong:
        raise UsageError(f"--resolutions {wrong} are not trained by this recipe; choose among {schedule.resolutions()}")
    if not _BATCH.value:
        return
    per_device = _BATCH.value // num_devices
    if _BATCH.value % num_devices or per_device % microbatching.stddev_group(per_device, spec.mbstd_group_size):
        raise UsageError(
            f"--batch={_BATCH.value} must split into equal per-device batches of whole "
            f"minibatch-stddev groups: a multiple of {num_devices * spec.mbstd_group_size}"
        )
    for resolution in resolutions:
        try:
            microbatching.microbatch_count(
                per_device, schedule.config.max_microbatch_per_device.get(resolution), spec.mbstd_group_size
            )
        except ValueError as e:
            raise UsageError(f"--batch={_BATCH.value} at {resolution}x{resolution}: {e}") from None


def _print_profiles(prepared: list[step_benchmark.PreparedStep], resolution: int) -> None:
    """Traces one round of each prepared variant and prints its time per op kind."""
    for k, p in enumerate(prepared):
        spec = p.step.spec
        directory = os.path.join(_PROFILE_DIR.value, f"{resolution}px_{k}_{spec.upsample_impl}_{spec.downsample_impl}")
        times = op_profile.op_kind_times(op_profile.trace_round(p, directory))
        tqdm.write(
            f"XLA time per op kind, one round at {resolution}x{resolution}, {spec.compute_dtype}, "
            f"{spec.upsample_impl}/{spec.downsample_impl} (trace in {directory}):\n{op_profile.op_kind_table(times)}"
        )


def run_step_benchmark() -> None:
    compilation_cache.enable(_COMPILATION_CACHE.value)
    mesh = parallel.make_mesh()
    variants = []  # (spec, schedule, TrainStep) per --impls x --repeats_per_call
    for config, repeats in _step_config_variants(_config()):
        typed = TrainingConfig.parse(config)
        schedule = schedule_for_devices(typed, mesh.size)
        step_config = dataclasses.replace(StepConfig.from_config(typed, schedule), repeats_per_call=repeats)
        variants.append((typed.model, schedule, train_step.TrainStep(typed.model, typed.loss, step_config, mesh)))
    resolutions = _resolutions(variants[0][1].resolutions())
    for spec, schedule, _ in variants:
        _check_step_flags(spec, schedule, resolutions, mesh.size)
    peaks = {dtype: (_PEAK_TFLOPS.value * 1e12, "given") for dtype in ("float32", "bfloat16") if _PEAK_TFLOPS.value}
    results = [[] for _ in variants]
    for resolution in tqdm(resolutions, desc="resolutions", leave=False):
        prepared = [
            step_benchmark.PreparedStep(step, resolution, _BATCH.value or schedule.minibatch_for(resolution))
            for _, schedule, step in variants
        ]
        measured = step_benchmark.measure_steps(prepared, iterations=_STEPS.value, windows=_WINDOWS.value, peaks=peaks)
        tqdm.write(step_benchmark.results_table(measured))
        if _PROFILE_DIR.value:
            _print_profiles(prepared, resolution)
        del prepared  # frees the states and levels of this resolution
        for rows, result in zip(results, measured):
            rows.append(result)
    device = mesh.devices.flat[0]
    print(
        f"\nOn {mesh.size} {device.device_kind} device(s); peak TFLOP/s per device: "
        + ", ".join(f"{dtype} {flops / 1e12:.3f} ({source})" for dtype, (flops, source) in peaks.items())
    )
    projections = []
    for (spec, schedule, _), rows in zip(variants, results):
        print(
            f"\n{spec.compute_dtype}, {spec.upsample_impl}/{spec.downsample_impl}, repeats per call "
            f"{rows[0].repeats_per_call}:"
        )
        print(step_benchmark.results_table(rows))
        stages = run_length.images_per_resolution(schedule)
        missing = sorted({s.resolution for s in stages} - set(resolutions))
        reasons = ([f"resolutions {missing} not measured"] if missing else []) + (
            ["--batch is not the recipe's minibatch"] if _BATCH.value else []
        )
        if reasons:
            print(f"(no projection of the recipe: {'; '.join(reasons)})")
            continue
        print(f"Projected wall time of the recipe ({schedule.total_kimg:g} kimg on {mesh.size} device(s)):")
        wall = _print_projection(
            stages, {r.resolution: r.img_per_s for r in rows}, {r.resolution: r.compile_s for r in rows}
        )
        projections.append(
            {
                "compute_dtype": spec.compute_dtype,
                "upsample_impl": spec.upsample_impl,
                "downsample_impl": spec.downsample_impl,
                "repeats_per_call": rows[0].repeats_per_call,
                **wall,
            }
        )
    _write_json(
        "step", {"results": step_benchmark.as_json([r for rows in results for r in rows]), "projections": projections}
    )


# ------------------------------------------------------------------------------------- FLOP-model mode


def run_flop_model() -> None:
    config = _config()
    dtypes = _compute_dtypes(config)
    if len(dtypes) > 1:
        raise UsageError("--flop_model takes one --dtype")
    config.model.compute_dtype = dtypes[0]
    if not _PEAK_TFLOPS.value:
        raise UsageError("--flop_model needs --peak_tflops (e.g. 800 for an H100 in bfloat16)")
    typed = TrainingConfig.parse(config)
    spec, schedule = typed.model, schedule_for_devices(typed, _DEVICES.value or jax.device_count())
    num_devices = schedule.num_devices
    flops_per_s = _PEAK_TFLOPS.value * 1e12 * _UTILISATION.value * num_devices
    img_per_s = {r: flops_per_s / model_flops.iteration_flops_per_image(spec, r) for r in schedule.resolutions()}
    print(
        f"FLOP model: {num_devices} device(s) x {_PEAK_TFLOPS.value:g} TFLOP/s x {_UTILISATION.value:g} utilisation, "
        f"{spec.upsample_impl}/{spec.downsample_impl} convolution forms"
    )
    result = _print_projection(run_length.images_per_resolution(schedule), img_per_s)
    total_flops = sum(
        e["images"] * model_flops.iteration_flops_per_image(spec, r) for r, e in result["per_resolution"].items()
    )
    print(f"whole schedule: {total_flops:.2e} FLOP")
    _write_json("flop_model", {"img_per_s": img_per_s, "projection": result, "total_flops": total_flops})


# ---------------------------------------------------------------------------------------- input mode


def _dataset_for(resolution: int):
    from pggan.data import dataset as dataset_lib  # the reading stack: tfds, array_record
    from pggan.data import source_specs

    if _DATASET.value:
        return dataset_lib.open_dataset(_DATASET.value, _DATA_DIR.value)
    count = _NUM_EXAMPLES.value or max(64, min(20_000, (1 << 30) // (resolution * resolution * 3)))
    source = source_specs.make_source("synthetic", resolution=resolution, num_examples=count)
    return dataset_lib.open_dataset(f"synthetic_{resolution}_n{count}", _DATA_DIR.value, prepare_if_missing_from=source)


def measure_input(resolution: int) -> dict:
    """Images/s of the host input pipeline at one resolution, delivered as global jax.Arrays."""
    from pggan.data import pipeline  # grain

    dataset = _dataset_for(resolution)
    mesh = jax.make_mesh((jax.device_count(),), (pipeline.DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))
    batch_size = _BATCH.value or OFFICIAL_MINIBATCH_8GPU.get(resolution, 32)
    batch_size = -(-batch_size // jax.device_count()) * jax.device_count()
    iterator = pipeline.InputIterator(
        dataset,
        resolution=resolution,
        batch_size=batch_size,
        mesh=mesh,
        seed=0,
        num_threads=_NUM_THREADS.value,
        prefetch_batches=_PREFETCH.value,
    )
    for _ in range(WARMUP_BATCHES):
        jax.block_until_ready(next(iterator))
    images, start, cpu_start = 0, time.perf_counter(), time.process_time()
    with tqdm(desc=f"input {resolution}px", unit="img", leave=False) as bar:
        while time.perf_counter() - start < _SECONDS.value:
            batch = next(iterator)
            images += batch_size
            bar.update(batch_size)
        jax.block_until_ready(batch)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    iterator.close()
    image_mib = resolution * resolution * dataset.channels / 2**20
    return {
        "resolution": resolution,
        "batch_size": batch_size,
        "img_per_s": images / seconds,
        "mib_per_s": images * image_mib / seconds,
        "cpu_ms_per_img": 1000 * cpu_seconds / images,
        "num_examples": dataset.num_examples,
    }


def run_input_benchmark() -> None:
    print(
        f"Input pipeline on {jax.device_count()} {jax.devices()[0].platform} device(s), "
        f"{os.cpu_count()} CPU cores, {_NUM_THREADS.value} reader threads"
    )
    print(f"{'resolution':>10} {'batch':>6} {'img/s':>10} {'MiB/s':>8} {'cpu ms/img':>11} {'examples':>9}")
    results = []
    for resolution in _resolutions([32, 128, 1024]):
        result = measure_input(resolution)
        results.append(result)
        print(
            f"{result['resolution']:>10} {result['batch_size']:>6} {result['img_per_s']:>10.0f} "
            f"{result['mib_per_s']:>8.0f} {result['cpu_ms_per_img']:>11.3f} {result['num_examples']:>9}",
            flush=True,
        )
    _write_json("input", {"results": results})


# ------------------------------------------------------------------------------------ Inception mode


def run_inception_benchmark() -> None:
    from pggan.benchmarks import inception

    batch = _BATCH.value or 64
    print(
        f"FID Inception features (random weights, float32, HIGHEST precision) on {jax.device_count()} "
        f"{jax.devices()[0].device_kind} device(s), batch {batch}"
    )
    _rates_per_resolution("inception", _resolutions([32, 256]), lambda r: inception.measure_inception(r, batch))


def _rates_per_resolution(mode: str, resolutions: list[int], measure) -> None:
    """Prints compile s and img/s of measure(resolution) (a dict with those keys) per resolution; the JSON."""
    print(f"{'resolution':>10} {'compile s':>10} {'img/s':>10}")
    results = []
    for resolution in resolutions:
        result = measure(resolution)
        results.append(result)
        print(f"{resolution:>10} {result['compile_s']:>10.1f} {result['img_per_s']:>10.1f}", flush=True)
    _write_json(mode, {"results": results})


# ----------------------------------------------------------------------------------- generation mode


def run_generation_benchmark() -> None:
    from pggan.benchmarks import generation as generation_benchmark
    from pggan.sampling import generation

    spec = TrainingConfig.parse(_config()).model
    batch = _BATCH.value or generation.DEFAULT_BATCH_PER_DEVICE * jax.local_device_count()
    print(
        f"Generator (random weights, {spec.compute_dtype}, fmap_base {spec.fmap_base}, fmap_max {spec.fmap_max}) "
        f"on {jax.local_device_count()} {jax.devices()[0].device_kind} device(s), batch {batch}"
    )
    _rates_per_resolution(
        "generation",
        _resolutions([spec.resolution]),
        lambda r: generation_benchmark.measure_generation(spec, r, batch),
    )


# -------------------------------------------------------------------------------------- quality mode


def run_quality_check() -> None:
    from pggan.benchmarks import quality

    def report(row):
        print(
            f"{row['dtype']:>9} seed {row['seed']:>3}: SWD x1e3 avg {row['swd_avg']:.2f} "
            f"({_format_hours(row['seconds'])})",
            flush=True,
        )

    config = _config()
    dtypes = tuple(_compute_dtypes(config)) if _DTYPE.value else ("float32", "bfloat16")
    result = quality.compare_dtypes(config, _RUNS_DIR.value, _integers(_SEEDS), dtypes, report=report)
    for dtype, s in result["summary"].items():
        print(f"{dtype:>9}: mean {s['mean']:.2f}  std {s['std']:.2f}  range [{s['min']:.2f}, {s['max']:.2f}]")
    if "bf16_passes" in result:
        print("bfloat16 is " + ("no worse than" if result["bf16_passes"] else "WORSE than") + " the float32 spread")
    _write_json("quality", result)


def run_real_floor() -> None:
    from pggan.benchmarks import quality

    result = quality.real_floor(_config(), _integers(_SEEDS))
    print(f"Real-vs-real SWD x1e3 of the {result['num_reals']} images at the recipe's final resolution:")
    for row in result["runs"]:
        levels = ", ".join(f"{k} {v:.2f}" for k, v in row.items() if k not in ("kind", "seed"))
        print(f"{row['kind']:>9} seed {row['seed']:>3}: {levels}")
    for kind, s in result["summary"].items():
        print(f"{kind:>9}: mean {s['mean']:.2f}  std {s['std']:.2f}  range [{s['min']:.2f}, {s['max']:.2f}]")
    _write_json("real_floor", result)


def main(argv):
    modes = (
        (_INPUT_ONLY, run_input_benchmark),
        (_INCEPTION, run_inception_benchmark),
        (_GENERATION, run_generation_benchmark),
        (_QUALITY, run_quality_check),
        (_REAL_FLOOR, run_real_floor),
        (_FLOP_MODEL, run_flop_model),
    )
    chosen = [(flag.name, run_mode) for flag, run_mode in modes if flag.value]

    def run():
        if len(chosen) > 1:
            raise UsageError(f"choose one mode, got --{' --'.join(name for name, _ in chosen)}")
        chosen[0][1]() if chosen else run_step_benchmark()

    return program_main(run)(argv)


if __name__ == "__main__":
    run_program(main, "__main__")
