"""tools/evaluate.py on a real run directory: checkpoints of a tiny 16x16 model at 8 px and 16 px, and a
prepared synthetic dataset. The tool's main() runs in this process (flags parsed by absl as on the
command line); one test starts it as a real subprocess.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pggan import checkpoint, evaluation
from pggan.data import config as data_config
from pggan.metrics import WEIGHTS_ENV, MetricSuite
from pggan.metrics.inception_weights import expected_state_dict_shapes
from pggan.sampling import media
from tests import tool_support
from tests.metrics_support import golden_images, random_inception_state_dict, write_torch_zip_state_dict
from tests.run_support import REPO, load_recipe, subprocess_env, write_checkpoints

TOOL = os.path.join(REPO, "tools", "evaluate.py")
GOLDEN = Path(__file__).parent / "golden"
STAGES = ((1000, 8, 1.0), (2000, 16, 1.0))  # (step, resolution, alpha) of the two checkpoints
NUM_IMAGES = 20


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(workdir, cache dir, prepared dataset): 64 synthetic 16x16 images, two checkpoints."""
    config = load_recipe("tiny")
    config.dataset.data_dir = str(tmp_path_factory.mktemp("datasets"))
    dataset = data_config.open_from_config(config.dataset, resolution=16)
    workdir = tmp_path_factory.mktemp("run")
    write_checkpoints(workdir, config, STAGES)
    return str(workdir), str(tmp_path_factory.mktemp("cache")), dataset


def _tool(*args: str) -> int:
    """Runs the tool's main() in this process with these command-line flags; returns its exit status."""
    return tool_support.run_main("evaluate", *args)


def _records_from(workdir: str, count: int) -> list[dict]:
    """The last `count` records of metrics.jsonl."""
    return evaluation.read_records(workdir)[-count:]


def _upscaled_twice(images: np.ndarray) -> np.ndarray:
    return np.kron(images, np.ones((1, 2, 2, 1), np.uint8))


def test_all_checkpoints_give_a_table_and_records_that_follow_the_protocol(run, capsys):
    workdir, cache, dataset = run
    args = (
        f"--workdir={workdir}",
        "--all",
        "--metrics=swd,ms_ssim",
        f"--num_images={NUM_IMAGES}",
        "--batch_size=8",
        f"--cache_dir={cache}",
    )
    assert _tool(*args) == 0
    records = _records_from(workdir, 2)
    assert [(r["step"], r["resolution"], r["alpha"], r["metric_resolution"]) for r in records] == [
        (1000, 8, 1.0, 16),
        (2000, 16, 1.0, 16),
    ]
    for r in records:
        assert (r["source"], r["network"], r["reals"]) == ("evaluate.py", "ema", "synthetic16")
        assert r["details"] == {
            "swd": {"num_reals": NUM_IMAGES, "num_fakes": NUM_IMAGES},
            "ms_ssim": {"num_fakes": NUM_IMAGES},
        }
        assert sorted(r["metrics"]) == ["ms_ssim", "swd_16", "swd_avg"]
        assert r["metrics"]["swd_16"] == r["metrics"]["swd_avg"] > 0 and 0 < r["metrics"]["ms_ssim"] < 1
    lines = capsys.readouterr().out.splitlines()
    table = lines[lines.index(next(line for line in lines if line.split()[:1] == ["step"])) :][:3]
    assert table[0].split() == ["step", "kimg", "resolution", "alpha", "swd_16", "swd_avg", "ms_ssim"]
    for line, r in zip(table[1:], records):
        assert line.split() == [
            str(r["step"]),
            f"{r['kimg']:.1f}",
            str(r["resolution"]),
            "1.000",
            f"{r['metrics']['swd_16']:.2f}",
            f"{r['metrics']['swd_avg']:.2f}",
            f"{r['metrics']['ms_ssim']:.4f}",
        ]
    counts = lines[lines.index(next(line for line in lines if line.split()[:1] == ["metric"])) :][:3]
    assert [line.split() for line in counts] == [
        ["metric", "protocol", "reals", "fakes"],
        ["swd", "-", str(NUM_IMAGES), str(NUM_IMAGES)],
        ["ms_ssim", "-", "-", str(NUM_IMAGES)],
    ]

    # The 8 px checkpoint, re-derived by hand: the seeded real subset read from the 8 px level, the
    # generator called directly on the seeded latents, both upscaled 2x, scored by a fresh suite.
    indices = np.random.default_rng([0, 0]).permutation(dataset.num_examples)[:NUM_IMAGES]
    reals, _ = dataset.level(8).read(indices)
    generator, _ = checkpoint.load_generator(workdir, step=1000)
    latents = np.random.default_rng([0, 1]).standard_normal((NUM_IMAGES, generator.spec.latent_size), dtype=np.float32)
    fakes = media.to_uint8(np.asarray(generator(latents, resolution=8, alpha=1.0)))
    suite = MetricSuite(("swd", "ms_ssim"), seed=0)
    expected = suite.evaluate([_upscaled_twice(fakes)], suite.real_statistics([_upscaled_twice(reals)]))
    assert records[0]["metrics"] == pytest.approx(expected, rel=1e-3)


def test_real_statistics_are_cached_per_resolution_and_reused(run, tmp_path):
    workdir, _, _ = run
    cache = tmp_path / "cache"
    args = (
        f"--workdir={workdir}",
        "--step=2000",
        "--metrics=swd",
        f"--num_images={NUM_IMAGES}",
        "--batch_size=8",
        f"--cache_dir={cache}",
    )
    assert _tool(*args) == 0
    first = _records_from(workdir, 1)[0]["metrics"]
    (cached,) = (cache / "real_stats").iterdir()
    assert cached.name.startswith(f"synthetic16-16px-{NUM_IMAGES}-") and cached.suffix == ".npz"
    written = cached.stat().st_mtime_ns

    # The same evaluation (and one with a metric that needs no reals) reads the file, never rewrites it.
    assert _tool(*args) == 0 and _tool(*args[:-4], "--metrics=swd,ms_ssim", *args[-3:]) == 0
    assert _records_from(workdir, 2)[0]["metrics"] == first
    assert list((cache / "real_stats").iterdir()) == [cached] and cached.stat().st_mtime_ns == written

    # What is in the file is what is used: altered descriptors change the score ...
    with np.load(cached) as data:
        stats = {k: data[k] for k in data.files}
    np.savez(cached, **{**stats, "swd_16": stats["swd_16"][::-1] * np.float32(0.5)})
    assert _tool(*args) == 0
    assert _records_from(workdir, 1)[0]["metrics"]["swd_16"] != pytest.approx(first["swd_16"], rel=1e-3)
    # ... a damaged file is recomputed, and other settings get their own file.
    cached.write_bytes(b"not an npz")
    assert _tool(*args) == 0 and _records_from(workdir, 1)[0]["metrics"] == first
    assert _tool(*args[:3], "--num_images=12", *args[4:]) == 0
    assert len(list((cache / "real_stats").iterdir())) == 2
    # A cache that cannot be written costs time, not the evaluation.
    blocked = tmp_path / "not_a_directory"
    blocked.write_text("")
    assert _tool(*args[:-1], f"--cache_dir={blocked}") == 0 and _records_from(workdir, 1)[0]["metrics"] == first


@pytest.mark.slow
def test_inception_metrics_from_a_weights_file(run, tmp_path, monkeypatch):
    workdir, _, _ = run
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    weights = tmp_path / "pt_inception.pth"
    write_torch_zip_state_dict(weights, random_inception_state_dict(expected_state_dict_shapes()))
    assert (
        _tool(
            f"--workdir={workdir}",
            "--metrics=swd,ms_ssim,fid,kid,is,pr_inception",
            "--num_images=10",
            "--num_reals=10",
            "--num_fakes=10",
            "--batch_size=16",
            f"--inception_weights={weights}",
            f"--cache_dir={tmp_path / 'cache'}",
        )
        == 0
    )
    record = _records_from(workdir, 1)[0]
    assert record["step"] == 2000 and record["details"]["fid"] == {"protocol": "tf1", "num_reals": 10, "num_fakes": 10}
    scores = record["metrics"]
    assert set(scores) == {
        "swd_16",
        "swd_avg",
        "ms_ssim",
        "fid",
        "kid_mean",
        "kid_std",
        "is_mean",
        "is_std",
        "precision_inception",
        "recall_inception",
    }
    assert all(np.isfinite(v) for v in scores.values())
    assert scores["fid"] > 0 and 1.0 <= scores["is_mean"] <= 1008.0
    assert 0.0 <= scores["precision_inception"] <= 1.0 and 0.0 <= scores["recall_inception"] <= 1.0
    (cached,) = (tmp_path / "cache" / "real_stats").iterdir()
    with np.load(cached) as data:
        assert data["inception_features"].shape == (10, 2048) and data["inception_cov"].shape == (2048, 2048)


def test_without_weights_inception_metrics_are_skipped_with_advice(run, tmp_path, monkeypatch, capsys):
    workdir, _, _ = run
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    common = (f"--workdir={workdir}", "--num_images=10", "--batch_size=16", f"--cache_dir={tmp_path}")
    assert _tool(*common, "--metrics=swd,fid,kid") == 0
    err = capsys.readouterr().err
    assert "skipping fid,kid" in err and WEIGHTS_ENV in err
    assert sorted(_records_from(workdir, 1)[0]["metrics"]) == ["swd_16", "swd_avg"]
    assert _tool(*common, "--metrics=fid,is") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and WEIGHTS_ENV in err


@pytest.mark.parametrize(
    "args, message",
    [
        (("--step=5",), "no checkpoint at step 5"),
        (("--all", "--step=1000"), "drop --step"),
        (("--metrics=swd,lpips",), "unknown metrics ['lpips']"),
        (("--data_dir={empty}",), "no prepared dataset synthetic16"),
        (("--dataset=elsewhere",), "no prepared dataset elsewhere"),
        (("--workdir={empty}",), "no checkpoints in"),
    ],
)
def test_bad_requests_give_one_line_errors(run, tmp_path, capsys, args, message):
    workdir, cache, _ = run
    before = len(evaluation.read_records(workdir))
    args = [a.format(empty=tmp_path) for a in args]
    assert _tool(f"--workdir={workdir}", f"--cache_dir={cache}", "--metrics=swd", *args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert len(evaluation.read_records(workdir)) == before


def test_command_line_error_exits_with_status_one(tmp_path):
    result = subprocess.run(
        [sys.executable, TOOL, f"--workdir={tmp_path}"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: no checkpoints in")
    assert "Traceback" not in result.stderr


def _write_folder(path, images, names=None):
    """PNG files 000.png, 001.png, ... (or `names`) of uint8 [N, H, W, C] images; returns the folder."""
    path.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
            path / (names or {}).get(i, f"{i:03d}.png")
        )
    return path


def _folder_record(capsys) -> dict:
    """The JSON record that a folder evaluation prints last."""
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_folders_score_as_the_dataset_on_the_same_images(run, tmp_path, capsys):
    """A folder holding the dataset's images scores exactly as the prepared dataset (same order, same subsets);
    a corrupt file among the fakes is skipped and named."""
    _, cache, dataset = run
    reals, _ = dataset.level(16).read_range(0, dataset.num_examples)
    real_dir = _write_folder(tmp_path / "reals", reals)
    fake_dir = _write_folder(
        tmp_path / "fakes", np.random.default_rng(3).integers(0, 256, (24, 16, 16, 3), dtype=np.uint8)
    )
    (fake_dir / "zz_broken.png").write_bytes(b"\x89PNG not really")
    common = (
        f"--fakes={fake_dir}",
        "--metrics=swd,ms_ssim",
        f"--num_images={NUM_IMAGES}",
        "--batch_size=8",
        f"--cache_dir={cache}",
    )
    assert _tool(*common, f"--reals={real_dir}") == 0
    from_folder = _folder_record(capsys)
    data_dir = os.path.dirname(os.path.dirname(dataset.path))
    assert _tool(*common, f"--reals={dataset.name}", f"--data_dir={data_dir}") == 0
    from_dataset = _folder_record(capsys)
    assert from_folder["metrics"] == from_dataset["metrics"] and from_folder["metrics"]["swd_avg"] > 0
    assert (
        from_folder["details"]
        == from_dataset["details"]
        == {"swd": {"num_reals": NUM_IMAGES, "num_fakes": NUM_IMAGES}, "ms_ssim": {"num_fakes": NUM_IMAGES}}
    )
    assert (from_folder["reals"], from_folder["fakes"], from_dataset["reals"]) == (
        str(real_dir),
        str(fake_dir),
        "synthetic16",
    )


def test_metrics_of_the_fakes_alone_need_no_reals(tmp_path, capsys):
    fake_dir = _write_folder(
        tmp_path / "fakes", np.random.default_rng(4).integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    )
    assert _tool(f"--fakes={fake_dir}", "--metrics=ms_ssim", "--num_images=10", f"--cache_dir={tmp_path}") == 0
    record = _folder_record(capsys)
    assert record["reals"] == "none" and record["details"] == {"ms_ssim": {"num_fakes": 10}}
    assert 0 < record["metrics"]["ms_ssim"] < 1


@pytest.mark.slow
def test_fid_of_more_fakes_than_reals_and_statistics_written_then_read(tmp_path, monkeypatch, capsys):
    """12 fakes against 10 reals; --save_stats writes the reals' statistics, --reference_stats reads them
    back and gives the same FID; the counts are printed and recorded next to each figure."""
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    weights = tmp_path / "pt_inception.pth"
    write_torch_zip_state_dict(weights, random_inception_state_dict(expected_state_dict_shapes()))
    real_dir = _write_folder(tmp_path / "reals", golden_images(10, size=24, seed=5))
    fake_dir = _write_folder(tmp_path / "fakes", golden_images(12, size=24, seed=6))
    common = (
        f"--fakes={fake_dir}",
        "--metrics=fid",
        "--batch_size=16",
        f"--inception_weights={weights}",
        f"--cache_dir={tmp_path / 'cache'}",
    )
    assert _tool(*common, f"--reals={real_dir}", f"--save_stats={tmp_path / 'reals.npz'}") == 0
    out = capsys.readouterr().out
    from_images = json.loads(out.strip().splitlines()[-1])
    assert from_images["details"] == {"fid": {"protocol": "tf1", "num_fakes": 12, "num_reals": 10}}
    assert from_images["metrics"]["fid"] > 0 and ["fid", "tf1", "10", "12"] in [
        line.split() for line in out.splitlines()
    ]
    with np.load(tmp_path / "reals.npz") as saved:
        assert (str(saved["pggan_protocol"]), int(saved["num_images"]), saved["mu"].shape) == ("tf1", 10, (2048,))
    assert _tool(*common, f"--reference_stats={tmp_path / 'reals.npz'}") == 0
    from_stats = _folder_record(capsys)
    assert from_stats["metrics"]["fid"] == pytest.approx(from_images["metrics"]["fid"], rel=1e-9)
    assert from_stats["details"] == from_images["details"] and from_stats["reals"] == str(tmp_path / "reals.npz")


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ("--metrics=swd", "--fakes={mixed}", "--reals={mixed}"),
            "swd and ms_ssim need square images all of one size, got 16x16, 20x20",
        ),
        (
            ("--metrics=fid,kid", "--fakes={mixed}", f"--reference_stats={GOLDEN}/pytorch_fid_stats_64d.npz"),
            "serve fid, is and ms_ssim only: drop kid",
        ),
        (
            ("--metrics=fid", "--fakes={mixed}", f"--reference_stats={GOLDEN}/pytorch_fid_stats_64d.npz"),
            "holds statistics of 64-d features",
        ),
        (("--metrics=fid", "--fakes={mixed}", "--reference_stats={mixed}/a.png"), "is not a readable .npz"),
        (("--metrics=fid", "--fakes={mixed}"), "nothing to compare"),
        (("--metrics=fid", "--fakes={mixed}", "--reals={mixed}", "--dataset=x"), "--reals and --dataset both choose"),
        (("--metrics=fid", "--fakes={empty}", "--reals={mixed}"), "no images"),
    ],
)
def test_folder_requests_give_one_line_errors(tmp_path, capsys, args, message):
    mixed = _write_folder(
        tmp_path / "mixed", [np.zeros((16, 16, 3), np.uint8), np.zeros((20, 20, 3), np.uint8)], {0: "a.png", 1: "b.png"}
    )
    (tmp_path / "empty").mkdir()
    assert (
        _tool(
            f"--cache_dir={tmp_path}",
            "--num_images=10",
            *(a.format(mixed=mixed, empty=tmp_path / "empty") for a in args),
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def test_a_run_given_as_fakes_is_scored_as_with_workdir(run, tmp_path):
    workdir, cache, _ = run
    common = ("--metrics=swd", f"--num_images={NUM_IMAGES}", "--batch_size=8", f"--cache_dir={cache}")
    assert _tool(f"--workdir={workdir}", *common) == 0 and _tool(f"--fakes={workdir}", *common) == 0
    first, second = _records_from(workdir, 2)
    assert first["metrics"] == second["metrics"] and first["step"] == second["step"]


def test_scores_are_formatted_as_people_read_them():
    scores = {"swd_32": 42.0, "swd_16": 50.8234, "swd_avg": 46.4117, "fid": 12.3, "kid_mean": 0.0123456}
    assert evaluation.format_scores(scores) == (
        "SWD x1e3 32 px 42.00, 16 px 50.82 (mean of 16-32 px 46.41); fid 12.30  kid_mean 0.01235"
    )
    assert evaluation.format_scores({"swd_16": 139.0, "swd_avg": 139.0}) == "SWD x1e3 16 px 139.00"
