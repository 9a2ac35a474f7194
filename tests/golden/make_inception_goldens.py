"""Makes the golden fixtures of the metrics tests. Run once by a developer; CI never runs it.

Needs a separate venv with torch, torchvision, pytorch-fid and torchmetrics (never the project's):

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 pytorch-fid torchmetrics
    /tmp/torchvenv/bin/python tests/golden/make_inception_goldens.py

Writes, next to this script:
  inception_taps.npz     pytorch-fid's FID Inception (the real FIDInceptionA/C/E_1/E_2 classes)
                         with seeded random weights (tests/metrics_support.py) on a few TF1-resized
                         images: the 64/192/768/2048 taps and the bias-free logits.
  tiny_state_dict.pth    a few small tensors written by torch.save (zip format) ...
  tiny_state_dict_legacy.pth  ... and the same in the pre-1.6 sequential format;
  tiny_state_dict_expected.npz  their values as NumPy arrays.
  kid_fid_torchmetrics.npz  torchmetrics' poly_mmd per KID subset and _compute_fid on seeded features.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torchvision
from pytorch_fid import inception as pytorch_fid_inception
from torchmetrics.image.fid import _compute_fid
from torchmetrics.image.kid import poly_mmd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # the repository root
from tests.metrics_support import golden_images, random_features, random_inception_state_dict, tf1_resize_loops  # noqa: E402


def torch_state_dict_shapes() -> dict[str, tuple[int, ...]]:
    """Names and shapes of the FID Inception's tensors (FID blocks have torchvision's layers)."""
    model = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def make_inception_taps() -> None:
    weights = random_inception_state_dict(torch_state_dict_shapes())
    tensors = {k: torch.from_numpy(v) for k, v in weights.items()}
    # pytorch-fid's fid_inception_v3() downloads the real weights; hand it the random ones instead.
    pytorch_fid_inception.load_state_dict_from_url = lambda *args, **kwargs: dict(tensors)
    model = pytorch_fid_inception.InceptionV3(
        output_blocks=(0, 1, 2, 3), resize_input=False, normalize_input=False, use_fid_inception=True
    ).eval()
    images = golden_images()
    x = (tf1_resize_loops(images, 299, 299) - 128.0) / 128.0
    with torch.no_grad():
        blocks = model(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())
        pooled = [b.mean(dim=(2, 3)).numpy() for b in blocks]
        logits = torch.nn.functional.linear(torch.from_numpy(pooled[3]), tensors["fc.weight"]).numpy()
    spread = pooled[3].std(axis=0).mean() / pooled[3].mean()
    print(f"pool_3 relative spread across images: {spread:.3f} (must be >> 1e-4)")
    np.savez(
        HERE / "inception_taps.npz",
        images=images,
        features_64=pooled[0],
        features_192=pooled[1],
        features_768=pooled[2],
        features_2048=pooled[3],
        logits=logits,
    )


def make_tiny_state_dicts() -> None:
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 7
    state = {
        "conv.weight": torch.linspace(-1, 1, 24, dtype=torch.float32).reshape(2, 3, 2, 2),
        "transposed": base.t(),  # non-contiguous: strides into a shared storage
        "row_slice": base[1],  # storage offset 4
        "bn.running_var": torch.tensor([0.5, 1.5, 2.5], dtype=torch.float64),
        "half": torch.tensor([1.0, -2.5, 3.25], dtype=torch.float16),
        "bn.num_batches_tracked": torch.tensor(7, dtype=torch.int64),
    }
    torch.save(state, HERE / "tiny_state_dict.pth")
    torch.save(state, HERE / "tiny_state_dict_legacy.pth", _use_new_zipfile_serialization=False)
    np.savez(HERE / "tiny_state_dict_expected.npz", **{k: v.numpy() for k, v in state.items()})


def make_kid_fid() -> None:
    real, fake = random_features(40, 2048, 0.0, seed=1), random_features(30, 2048, 0.3, seed=2)
    rng = np.random.default_rng(3)
    subset_size, num_subsets = 20, 5
    real_idx = np.stack([rng.choice(len(real), subset_size, replace=False) for _ in range(num_subsets)])
    fake_idx = np.stack([rng.choice(len(fake), subset_size, replace=False) for _ in range(num_subsets)])
    kid = np.array(
        [poly_mmd(torch.from_numpy(real[r]), torch.from_numpy(fake[f])).item() for r, f in zip(real_idx, fake_idx)]
    )
    mu1, mu2 = torch.from_numpy(real.mean(0)), torch.from_numpy(fake.mean(0))
    cov1, cov2 = torch.from_numpy(np.cov(real, rowvar=False)), torch.from_numpy(np.cov(fake, rowvar=False))
    fid = _compute_fid(mu1, cov1, mu2, cov2).item()
    np.savez(HERE / "kid_fid_torchmetrics.npz", real_idx=real_idx, fake_idx=fake_idx, kid_per_subset=kid, fid=fid)


if __name__ == "__main__":
    torch.manual_seed(0)
    make_inception_taps()
    make_tiny_state_dicts()
    make_kid_fid()
    print("torch", torch.__version__, "torchvision", torchvision.__version__)
