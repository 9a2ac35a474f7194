"""Makes the golden fixtures of the protocol, VGG16 and reference-statistics tests. Run once by a developer.

Needs a separate venv with torch, torchvision and the reference packages (never the project's):

    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch==2.14.1 torchvision==0.29.1
    /tmp/refvenv/bin/pip install pytorch-fid==0.3.0 clean-fid==0.1.35 torch-fidelity==0.4.0 scikit-learn
    /tmp/refvenv/bin/python tests/golden/make_protocol_goldens.py

Writes, next to this script:
  protocol_goldens.npz   three real photographs (crops of scikit-learn's china.jpg and flower.jpg,
                         decoded by Pillow: 128x128, 208x200, 61x90) and, per Inception protocol,
                         the network input at seeded probe positions (`<protocol>_pixels` [3, 1024]) and
                         the pool_3 features with the seeded random weights (`<protocol>_features`
                         [3, 2048]), each computed by the reference package's own code:
                           tf1          torch-fidelity's FeatureExtractorInceptionV3 (TF1 resize inside)
                           pytorch_fid  pytorch-fid's get_activations on PNG files (its PIL loading,
                                        to_tensor, F.interpolate and 2x-1 inside InceptionV3)
                           clean        clean-fid's build_resizer('clean') on the decoded files, its
                                        (x - 128) / 128, then pytorch-fid's FID Inception network
  vgg16_goldens.npz      torch-fidelity's FeatureExtractorVGG16 (torchvision's VGG16 with seeded
                         random weights; TF1 resize to 224, ImageNet normalisation, fc2 after ReLU)
                         on the same photographs (`fc2_relu` [3, 4096]), and the names and shapes
                         of torchvision's vgg16 state dict.
  pytorch_fid_stats_64d.npz  what `python -m pytorch_fid --save-stats --dims 64` writes for the
                         three photographs (mu [64], sigma [64, 64]; random weights).
  tiny_state_dict_legacy_v1.pth  tests/metrics_support.tiny_float_tensors in torch's pre-1.6 format
                         with `torch._utils._rebuild_tensor` (as torchvision's vgg16-397923af.pth),
                         written by tests/metrics_support.py and checked here to load in torch.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torchvision
from cleanfid.resize import build_resizer
from PIL import Image
from pytorch_fid import fid_score
from pytorch_fid import inception as pytorch_fid_inception
from sklearn.datasets import load_sample_image
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.feature_extractor_vgg16 import FeatureExtractorVGG16

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # the repository root
from tests.metrics_support import (  # noqa: E402
    pixel_samples,
    random_inception_state_dict,
    random_vgg16_state_dict,
    tiny_float_tensors,
    write_torch_legacy_state_dict,
)


def photographs() -> list[np.ndarray]:
    """Real decoded photographs of three sizes: uint8 [H, W, 3]."""
    china, flower = load_sample_image("china.jpg"), load_sample_image("flower.jpg")
    return [china[100:228, 200:328], flower[80:288, 200:400], china[250:311, 400:490]]


def inception_weights() -> dict[str, torch.Tensor]:
    model = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    return {k: torch.from_numpy(v) for k, v in random_inception_state_dict(shapes).items()}


def pytorch_fid_model(weights, **kwargs):
    """pytorch-fid's InceptionV3 (FID variant) holding `weights` instead of the downloaded ones."""
    pytorch_fid_inception.load_state_dict_from_url = lambda *args, **kw: dict(weights)
    return pytorch_fid_inception.InceptionV3(**kwargs).eval()


def probe(x_nchw: torch.Tensor) -> np.ndarray:
    """Network input [1, 3, 299, 299] -> values at the golden probe positions [1024]."""
    rows, cols, channels = pixel_samples(x_nchw.shape[-1])
    return x_nchw[0].numpy()[channels, rows, cols]


def make_protocol_goldens(images, files, weights, workdir: Path) -> None:
    out = {f"image_{i}": image for i, image in enumerate(images)}
    pth = workdir / "inception.pth"
    torch.save(weights, pth)

    # tf1: torch-fidelity end to end; its network input captured by a hook on the first conv.
    extractor = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(pth))
    seen = []
    extractor.Conv2d_1a_3x3.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    features = []
    for image in images:
        with torch.no_grad():
            features.append(extractor(torch.from_numpy(image).permute(2, 0, 1)[None].contiguous())[0][0].numpy())
    out["tf1_features"], out["tf1_pixels"] = np.stack(features), np.stack([probe(x) for x in seen])

    # pytorch_fid: its get_activations on the PNG files (batch 1: the files differ in size).
    model = pytorch_fid_model(weights, output_blocks=[3])
    seen.clear()
    model.blocks[0][0].register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    out["pytorch_fid_features"] = fid_score.get_activations(
        files, model, batch_size=1, dims=2048, device="cpu", num_workers=0
    ).astype(np.float32)
    out["pytorch_fid_pixels"] = np.stack([probe(x) for x in seen])

    # clean: clean-fid's resizer on the decoded files (as its ResizeDataset reads them) and its
    # (x - 128) / 128; its TorchScript network is the same TF Inception, here pytorch-fid's port.
    resize = build_resizer("clean")
    model = pytorch_fid_model(weights, output_blocks=[3], resize_input=False, normalize_input=False)
    pixels, features = [], []
    for file in files:
        resized = resize(np.array(Image.open(file).convert("RGB")))
        x = (torch.from_numpy(resized).permute(2, 0, 1)[None] - 128) / 128
        with torch.no_grad():
            features.append(model(x)[0][0, :, 0, 0].numpy())
        pixels.append(probe(x))
    out["clean_features"], out["clean_pixels"] = np.stack(features), np.stack(pixels)
    for name in ("tf1", "pytorch_fid", "clean"):
        spread = out[f"{name}_features"].std(axis=0).mean() / out[f"{name}_features"].mean()
        print(f"{name}: pool_3 relative spread across images {spread:.3f} (must be >> 1e-4)")
    np.savez_compressed(HERE / "protocol_goldens.npz", **out)


def make_pytorch_fid_stats(weights, image_dir: Path) -> None:
    target = HERE / "pytorch_fid_stats_64d.npz"
    target.unlink(missing_ok=True)
    pytorch_fid_inception.load_state_dict_from_url = lambda *args, **kw: dict(weights)
    fid_score.save_fid_stats([str(image_dir), str(target)], batch_size=1, device="cpu", dims=64, num_workers=0)


def make_vgg16_goldens(images, workdir: Path) -> None:
    shapes = {k: tuple(v.shape) for k, v in torchvision.models.vgg16(weights=None).state_dict().items()}
    pth = workdir / "vgg16.pth"
    torch.save({k: torch.from_numpy(v) for k, v in random_vgg16_state_dict(shapes).items()}, pth)
    extractor = FeatureExtractorVGG16("vgg16", ["fc2_relu"], feature_extractor_weights_path=str(pth))
    with torch.no_grad():
        features = np.stack(
            [extractor(torch.from_numpy(image).permute(2, 0, 1)[None].contiguous())[0][0].numpy() for image in images]
        )
    print(
        f"vgg16 fc2_relu: {np.mean(features > 0):.2f} positive, spread "
        f"{features.std(axis=0).mean() / features.mean():.3f}"
    )
    np.savez_compressed(
        HERE / "vgg16_goldens.npz",
        fc2_relu=features,
        names=np.array(list(shapes)),
        shapes=np.array([str(list(s)) for s in shapes.values()]),
    )


def make_legacy_v1_file() -> None:
    path = HERE / "tiny_state_dict_legacy_v1.pth"
    tensors = tiny_float_tensors()
    write_torch_legacy_state_dict(path, tensors, "torch._utils._rebuild_tensor")
    loaded = torch.load(path, weights_only=False)
    assert sorted(loaded) == sorted(tensors)
    for key, value in tensors.items():
        np.testing.assert_array_equal(loaded[key].numpy(), value)
    print(f"{path.name}: torch.load reads it back exactly")


if __name__ == "__main__":
    torch.manual_seed(0)
    weights = inception_weights()
    images = photographs()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "images").mkdir()
        files = []
        for i, image in enumerate(images):
            files.append(workdir / "images" / f"{i}.png")
            Image.fromarray(image).save(files[-1])
        make_protocol_goldens(images, files, weights, workdir)
        make_pytorch_fid_stats(weights, workdir / "images")
        make_vgg16_goldens(images, workdir)
    make_legacy_v1_file()
    print("torch", torch.__version__, "torchvision", torchvision.__version__)
