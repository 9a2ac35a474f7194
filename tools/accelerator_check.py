r"""The one prepared check for a scarce accelerator: speed, memory, a real run and the device-sensitive tests.

    python tools/accelerator_check.py --out=DIR --data_dir=.accel_data        # on the GPU, about 7 minutes
    python tools/accelerator_check.py --out=DIR --data_dir=.accel_data --rehearse \
        --hide_packages=tensorflow_datasets,grain,imageio_ffmpeg,imageio      # on a CPU, as the bare GPU machine

Runs these parts one after the other, each in its own processes with its own time budget, so that one
slow or failing part cannot lose the others' results:
  env        devices, driver (nvidia-smi), Python and JAX/jaxlib/flax/optax/orbax versions, device memory;
  step_*     the compiled training step of configs/celebahq_1024.py (full official widths, the recipe's
             minibatch for the devices present) through tools/benchmark.py: bfloat16 at 64, 256, 16 and
             1024 px, float32 at 256 px (compile s, img/s, TFLOP/s and share of peak, peak device memory);
  train      a real progressive run of `python -m pggan.main` (4 -> 64 px, bfloat16, full widths) on the
             prepared dataset --dataset in --data_dir, stopped with SIGTERM once the 4x4 stage's checkpoint
             exists, resumed to the end, then one `tools/generate.py` grid;
  tests      the tests marked `accelerator` (model, step, bf16, microbatching) at JAX's default matmul
             precision on JAX's default device;
  projection the wall time of the recipe's whole 12,000-kimg schedule on the devices present, from the
             bfloat16 rates measured (resolutions not measured interpolated, see `interpolated_rates`).
`--rehearse` shrinks every part (configs/tiny.py, 4 and 8 px, a 4 -> 8 px run, two tests) to rehearse
the whole check on a CPU in a few minutes. The results go to DIR/accelerator_check.json, rewritten after
every part, with every child's output in DIR/accelerator_check.log and the grid in DIR/grid.png.
The exit status is 0 when every part succeeded, 1 otherwise (the JSON says which).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JSON_NAME, LOG_NAME, GRID_NAME = "accelerator_check.json", "accelerator_check.log", "grid.png"
TEST_FILES = (
    "tests/test_layers.py",
    "tests/test_networks.py",
    "tests/test_train_step.py",
    "tests/test_microbatching.py",
)
TAIL_CHARS = 3000
GENERATE_SECONDS = 25  # kept from the train part's time for the sample grid
_TEST_LINE = re.compile(r"^(\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b", re.MULTILINE)

# (part, seconds at most): the GPU check. Each part may also use what the parts before it left unused (so
# 1024 px, whose compile time is the least known, comes after the other steps); the sum is the check's budget.
BUDGETS = (
    ("env", 15),
    ("step_bf16_64", 40),
    ("step_bf16_256", 40),
    ("step_bf16_16", 25),
    ("step_f32_256", 35),
    ("step_bf16_1024", 80),
    ("train", 115),
    ("tests", 60),
    ("projection", 10),
)
REHEARSAL_BUDGETS = (
    ("env", 30),
    ("step_bf16_8", 60),
    ("step_f32_4", 60),
    ("train", 240),
    ("tests", 90),
    ("projection", 30),
)

ENV_SCRIPT = r"""
import json, platform, jax, jaxlib, flax, optax, numpy
import orbax.checkpoint as ocp
devices = jax.devices()
print("ENV_JSON " + json.dumps({
    "python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
    "flax": flax.__version__, "optax": optax.__version__, "orbax_checkpoint": ocp.__version__,
    "numpy": numpy.__version__, "platform": devices[0].platform,
    "platform_version": getattr(devices[0].client, "platform_version", ""),
    "devices": [{"id": d.id, "kind": d.device_kind, "memory_bytes_limit": (d.memory_stats() or {}).get("bytes_limit")}
                for d in devices]}))
"""


def _tail(text: str) -> str:
    return text[-TAIL_CHARS:]


class Check:
    """The parts' shared state: the output folder, the deadline, the children's environment, the results."""

    def __init__(self, args: argparse.Namespace, budgets: tuple):
        self.args = args
        self.start = time.monotonic()
        self.deadline = self.start + sum(seconds for _, seconds in budgets)
        os.makedirs(args.out, exist_ok=True)
        self.work = tempfile.mkdtemp(prefix="pggan_accelerator_check_")
        self.log = open(os.path.join(args.out, LOG_NAME), "a", buffering=1)
        self.env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [self._hiding_dir(), REPO, os.environ.get("PYTHONPATH")])),
        }
        self.results = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
            "rehearsal": args.rehearse,
            "hidden_packages": args.hide_packages,
            "budget_s": sum(s for _, s in budgets),
            "parts": {},
        }
        path = os.path.join(args.out, JSON_NAME)
        if os.path.exists(path):  # a rerun of some parts (--parts) keeps the other parts' results
            with open(path) as f:
                self.results["parts"] = json.load(f).get("parts", {})

    def _hiding_dir(self) -> str | None:
        """A folder with a sitecustomize.py that makes the --hide_packages unimportable in every child."""
        if not self.args.hide_packages:
            return None
        folder = os.path.join(self.work, "hide")
        os.makedirs(folder)
        with open(os.path.join(folder, "sitecustomize.py"), "w") as f:
            f.write(f"import sys\nfor name in {self.args.hide_packages.split(',')!r}:\n    sys.modules[name] = None\n")
        return folder

    def write(self) -> None:
        """Rewrites the JSON (atomically), so that a check cut short keeps what it measured."""
        self.results["elapsed_s"] = round(time.monotonic() - self.start, 1)
        path = os.path.join(self.args.out, JSON_NAME)
        with open(path + ".tmp", "w") as f:
            json.dump(self.results, f, indent=1)
        os.replace(path + ".tmp", path)

    def say(self, message: str) -> None:
        line = f"[{time.monotonic() - self.start:6.1f} s] {message}"
        print(line, flush=True)
        self.log.write(line + "\n")

    def start_process(self, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        """A child in its own process group (so that a timeout ends its children too), output to a file."""
        self.say("$ " + " ".join(argv))
        output = tempfile.NamedTemporaryFile("w+", dir=self.work, suffix=".out", delete=False)
        process = subprocess.Popen(
            argv, cwd=REPO, env=env or self.env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        process.output_path = output.name
        output.close()
        return process

    def finish_process(self, process: subprocess.Popen, seconds: float) -> tuple[int | None, str]:
        """(exit status or None on timeout, output) of a child given `seconds` more to finish."""
        try:
            status = process.wait(timeout=max(1.0, seconds))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            status = None
        with open(process.output_path, errors="replace") as f:
            output = f.read()
        self.log.write(output + f"\n(exit status {status if status is not None else 'none: out of time'})\n")
        return status, output

    def run(self, argv: list[str], seconds: float, env: dict | None = None) -> tuple[int | None, str, float]:
        """(exit status or None on timeout, output, seconds taken) of a child that gets `seconds`."""
        begin = time.monotonic()
        status, output = self.finish_process(self.start_process(argv, env), seconds)
        return status, output, time.monotonic() - begin


# ------------------------------------------------------------------------------------------------ parts


def part_env(check: Check, seconds: float) -> dict:
    status, output, _ = check.run([sys.executable, "-c", ENV_SCRIPT], seconds)
    lines = [line for line in output.splitlines() if line.startswith("ENV_JSON ")]
    result = {"ok": status == 0 and bool(lines), **(json.loads(lines[-1][9:]) if lines else {"output": _tail(output)})}
    try:
        smi = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit",
                "--format=csv,noheader",
            ],
            capture_output=True,
            text=True,
            timeout=10,
        )
        result["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as error:
        result["nvidia_smi"] = f"not available ({type(error).__name__})"
    return result


def part_step(check: Check, seconds: float, dtype: str, resolution: int) -> dict:
    """tools/benchmark.py's step mode at one resolution and compute dtype, in a process of its own."""
    config = "configs/tiny.py" if check.args.rehearse else "configs/celebahq_1024.py"
    json_path = os.path.join(check.work, f"step_{dtype}_{resolution}.json")
    argv = [
        sys.executable,
        "tools/benchmark.py",
        f"--config={config}",
        f"--resolutions={resolution}",
        f"--dtype={dtype}",
        f"--json={json_path}",
    ]
    if check.args.rehearse:
        argv += ["--steps=2", "--windows=1"]
    status, output, taken = check.run(argv, seconds)
    result = {
        "ok": status == 0 and os.path.exists(json_path),
        "exit_status": status,
        "seconds": round(taken, 1),
        "config": config,
    }
    if os.path.exists(json_path):
        with open(json_path) as f:
            result.update(json.load(f))
    else:
        result["output_tail"] = _tail(output)
    return result


def _checkpoint_steps(workdir: str) -> list[int]:
    """The complete checkpoints of a run (images shown), ascending."""
    folder = os.path.join(workdir, "checkpoints")
    return sorted(int(name) for name in os.listdir(folder) if name.isdigit()) if os.path.isdir(folder) else []


def part_train(check: Check, seconds: float) -> dict:
    """A progressive run stopped by SIGTERM after its first stage, resumed to the end, then one sample grid."""
    deadline = time.monotonic() + seconds
    workdir = os.path.join(check.work, "run")
    # Stopped once the 4x4 stage's checkpoint exists: the next stage's compile leaves time for the signal.
    config, resolution, phase_kimg = (
        ("configs/tiny.py", 8, 0.128) if check.args.rehearse else ("configs/synthetic.py", 64, 1.024)
    )
    stop_after = round(phase_kimg * 1000)
    command = [
        sys.executable,
        "-m",
        "pggan.main",
        f"--config={config}",
        f"--workdir={workdir}",
        f"--config.model.resolution={resolution}",
        "--config.model.compute_dtype=bfloat16",
        f"--config.dataset.name={check.args.dataset}",
        f"--config.dataset.data_dir={check.args.data_dir}",
        "--config.dataset.source=",
        f"--config.schedule.stabilize_kimg={phase_kimg}",
        f"--config.schedule.transition_kimg={phase_kimg}",
        f"--config.schedule.total_kimg={round(phase_kimg * (2 * resolution.bit_length() - 5), 6)}",
        f"--config.schedule.tick_kimg_base={phase_kimg / 2}",
        "--config.schedule.tick_kimg={}",
        "--config.checkpoint.every_ticks=2",
        "--config.samples.every_ticks=4",
        "--config.metrics.names=",
        f"--config.compilation_cache_dir={os.path.join(check.work, 'jax_cache')}",
    ]
    result = {"command": " ".join(command[1:]), "stop_after_nimg": stop_after}
    begin = time.monotonic()
    first = check.start_process(command)
    # SIGTERM once the first stage's checkpoint exists, or at 45% of the part's time.
    while first.poll() is None and time.monotonic() < begin + 0.45 * seconds:
        steps = _checkpoint_steps(workdir)
        if steps and steps[-1] >= stop_after:
            break
        time.sleep(0.2)
    result["sigterm_at_s"] = round(time.monotonic() - begin, 1)
    result["checkpoints_at_sigterm"] = _checkpoint_steps(workdir)
    if first.poll() is None:
        first.send_signal(signal.SIGTERM)
    status, output = check.finish_process(first, deadline - time.monotonic())
    stopped = [line for line in output.splitlines() if "Stopped by SIGTERM" in line]
    result["first"] = {
        "exit_status": status,
        "seconds": round(time.monotonic() - begin, 1),
        "stopped_line": stopped[-1][-300:] if stopped else None,
        "checkpoints": _checkpoint_steps(workdir),
        "output_tail": _tail(output),
    }
    status, output, taken = check.run(command, deadline - time.monotonic() - GENERATE_SECONDS)
    resumed = [line for line in output.splitlines() if "Resuming from checkpoint" in line]
    complete = [line for line in output.splitlines() if "Training complete" in line]
    ticks = [line.split("] ")[-1] for line in output.splitlines() if "img/s" in line and "tick" in line]
    result["resumed"] = {
        "exit_status": status,
        "seconds": round(taken, 1),
        "resumed_line": resumed[-1][-300:] if resumed else None,
        "complete_line": complete[-1][-300:] if complete else None,
        "checkpoints": _checkpoint_steps(workdir),
        "ticks": ticks[-12:],
        "output_tail": _tail(output),
    }
    grid = os.path.join(check.args.out, GRID_NAME)
    status, output, taken = check.run(
        [sys.executable, "tools/generate.py", f"--workdir={workdir}", "--grid=4x4", "--seed=0", f"--out={grid}"],
        deadline - time.monotonic(),
    )
    result["generate"] = {
        "exit_status": status,
        "seconds": round(taken, 1),
        "grid": os.path.exists(grid),
        "output_tail": _tail(output),
    }
    result["ok"] = bool(
        stopped
        and result["first"]["exit_status"] == 0
        and resumed
        and complete
        and result["resumed"]["exit_status"] == 0
        and result["generate"]["grid"]
    )
    return result


def part_tests(check: Check, seconds: float) -> dict:
    """The `accelerator` tests on JAX's default backend (one GPU; the CPU when rehearsing) at its default matmul
    precision: JAX_PLATFORMS and XLA_FLAGS are set empty, or tests/conftest.py would choose 8 CPU devices."""
    junit = os.path.join(check.work, "junit.xml")
    # addopts replaced: the GPU machine has no pytest-xdist, and one process suits one device.
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-o",
        "addopts=-ra --strict-markers",
        "-m",
        "accelerator",
        *TEST_FILES,
        "-v",
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
    ]
    if check.args.rehearse:
        argv += ["-k", "pixel_norm or split_microbatches"]
    status, output, taken = check.run(argv, seconds, {**check.env, "JAX_PLATFORMS": "", "XLA_FLAGS": ""})
    outcomes = dict(_TEST_LINE.findall(output))  # read as they were printed: complete even after a timeout
    result = {
        "ok": status == 0,
        "exit_status": status,
        "seconds": round(taken, 1),
        "outcomes": {kind: sum(o == kind for o in outcomes.values()) for kind in sorted(set(outcomes.values()))},
        "not_passed": sorted(test for test, outcome in outcomes.items() if outcome != "PASSED"),
    }
    if os.path.exists(junit):  # written at the end only: the failures' messages
        result["messages"] = {
            f"{case.get('classname')}::{case.get('name')}": (problem.get("message") or "")[:500]
            for case in ElementTree.parse(junit).getroot().iter("testcase")
            for problem in case
            if problem.tag in ("failure", "error")
        }
    result["output_tail"] = _tail(output)
    return result


def interpolated_rates(measured: dict[int, float], resolutions: list[int]) -> dict[int, tuple[float, str]]:
    """{resolution: (value, 'measured' | 'interpolated' | 'nearest')} for every one of `resolutions`.

    Between two measured resolutions the value is interpolated linearly in log(value) over log2(resolution)
    (geometric mean halfway); outside them it is the nearest measured one (e.g. 4 and 8 px take 16 px's
    img/s: a lower bound, and those stages take minutes).
    """
    known = sorted(measured)
    rates = {}
    for r in resolutions:
        lower, upper = [k for k in known if k <= r], [k for k in known if k >= r]
        if r in measured:
            rates[r] = (measured[r], "measured")
        elif lower and upper:
            a, b = lower[-1], upper[0]
            t = (math.log2(r) - math.log2(a)) / (math.log2(b) - math.log2(a))
            rates[r] = (math.exp((1 - t) * math.log(measured[a]) + t * math.log(measured[b])), "interpolated")
        else:
            rates[r] = (measured[(lower or upper)[-1 if lower else 0]], "nearest")
    return rates


def projection_of(results: dict) -> dict:
    """The recipe's whole schedule at the bfloat16 rates of a check's results (the JSON's content)."""
    from pggan.training import run_length
    from pggan.training.config import TrainingConfig
    from pggan.training.validation import schedule_for_devices

    parts = [part for name, part in results["parts"].items() if name.startswith("step_bf16_") and part.get("results")]
    if not parts:
        return {"ok": False, "error": "no bfloat16 step was measured"}
    rows = [row for part in parts for row in part["results"]]
    spec = importlib.util.spec_from_file_location("recipe", os.path.join(REPO, parts[0]["config"]))
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    schedule = schedule_for_devices(TrainingConfig.parse(recipe.get_config()), rows[0]["num_devices"])
    rates = interpolated_rates({row["resolution"]: row["img_per_s"] for row in rows}, schedule.resolutions())
    compiles = interpolated_rates({row["resolution"]: row["compile_s"] for row in rows}, schedule.resolutions())
    wall = run_length.project_wall_time(
        run_length.images_per_resolution(schedule),
        {r: value for r, (value, _) in rates.items()},
        {r: value for r, (value, _) in compiles.items()},
    )
    return {
        "ok": True,
        "recipe": parts[0]["config"],
        "num_devices": rows[0]["num_devices"],
        "total_kimg": schedule.total_kimg,
        "total_hours": wall["total_s"] / 3600,
        "train_hours": wall["train_s"] / 3600,
        "compile_hours": wall["compile_s"] / 3600,
        "per_resolution": {
            r: {"img_per_s": rates[r][0], "rate_source": rates[r][1], **entry}
            for r, entry in wall["per_resolution"].items()
        },
    }


def part_projection(check: Check, seconds: float) -> dict:
    """`projection_of` the results so far, in a child (this process never imports JAX: it would hold the GPU)."""
    status, output, _ = check.run(
        [sys.executable, os.path.abspath(__file__), f"--out={check.args.out}", "--project"], seconds
    )
    lines = [line for line in output.splitlines() if line.startswith("PROJECTION_JSON ")]
    return json.loads(lines[-1][16:]) if status == 0 and lines else {"ok": False, "output_tail": _tail(output)}


def _part_function(name: str):
    if name.startswith("step_"):
        _, dtype, resolution = name.split("_")
        return lambda check, seconds: part_step(check, seconds, dtype, int(resolution))
    return {"env": part_env, "train": part_train, "tests": part_tests, "projection": part_projection}[name]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, help="folder for the JSON, the log and the grid (created)")
    parser.add_argument("--data_dir", default=".accel_data", help="where the prepared dataset --dataset is")
    parser.add_argument("--dataset", default="synthetic64", help="prepared dataset of at least 64 px for the run")
    parser.add_argument("--rehearse", action="store_true", help="shrink every part, to rehearse on a CPU")
    parser.add_argument(
        "--hide_packages",
        default="",
        help="comma-separated modules made unimportable in every "
        "child, to rehearse a machine that lacks them (e.g. tensorflow_datasets,grain)",
    )
    parser.add_argument("--parts", default="", help="comma-separated parts to run (default: all)")
    parser.add_argument(
        "--budget_s",
        type=float,
        default=0.0,
        help="scale the chosen parts' budgets to this total (default: their own sum, 420 s for the whole GPU check)",
    )
    parser.add_argument("--project", action="store_true", help="only print the projection of --out's JSON")
    args = parser.parse_args(argv)
    if args.project:
        with open(os.path.join(args.out, JSON_NAME)) as f:
            print("PROJECTION_JSON " + json.dumps(projection_of(json.load(f))))
        return 0
    args.data_dir = os.path.abspath(args.data_dir)
    budgets = REHEARSAL_BUDGETS if args.rehearse else BUDGETS
    chosen = args.parts.split(",") if args.parts else [name for name, _ in budgets]
    unknown = sorted(set(chosen) - {name for name, _ in budgets})
    if unknown:
        parser.error(f"--parts: unknown {unknown}; choose among {[name for name, _ in budgets]}")
    budgets = tuple((name, seconds) for name, seconds in budgets if name in chosen)
    if args.budget_s:
        scale = args.budget_s / sum(seconds for _, seconds in budgets)
        budgets = tuple((name, seconds * scale) for name, seconds in budgets)
    check = Check(args, budgets)
    try:
        return _run_parts(check, budgets)
    finally:
        check.log.close()
        shutil.rmtree(check.work, ignore_errors=True)  # the run's checkpoints, the children's outputs


def _run_parts(check: Check, budgets: tuple) -> int:
    """Runs the parts in order, each with its budget plus what the earlier ones left; the exit status."""
    check.write()
    for index, (name, _) in enumerate(budgets):
        later = sum(seconds for _, seconds in budgets[index + 1 :])
        seconds = check.deadline - time.monotonic() - later  # its own budget plus what earlier parts left
        check.say(f"part {name}: {seconds:.0f} s")
        begin = time.monotonic()
        try:
            result = _part_function(name)(check, seconds)
        except Exception as error:
            result = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        result["part_seconds"] = round(time.monotonic() - begin, 1)
        check.results["parts"][name] = result
        check.write()
        check.say(f"part {name}: {'ok' if result.get('ok') else 'FAILED'} in {result['part_seconds']} s")
    failed = [name for name, part in check.results["parts"].items() if not part.get("ok")]
    check.results["failed_parts"] = failed
    check.write()
    check.say(f"done in {time.monotonic() - check.start:.0f} s; " + (f"failed: {failed}" if failed else "all parts ok"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
