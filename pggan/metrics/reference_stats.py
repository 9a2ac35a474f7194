"""FID statistics files (.npz): the `mu`/`sigma` files of pytorch-fid and clean-fid, read and written.

pytorch-fid (`python -m pytorch_fid --save-stats`) writes `np.savez_compressed(path, mu=..., sigma=...)`
with mu float64 [D] and sigma float64 [D, D] (D = 2048 for pool_3; `--dims` 64/192/768 give other
sizes). clean-fid (`make_custom_stats`, its published reference statistics) writes the same keys, mu
float32 (the mean of float32 features) and sigma float64. Both readers take `f["mu"]` and `f["sigma"]`
and ignore every other entry; our files add `pggan_protocol` (str, the protocol's name) and
`num_images` (int64), so they stay readable by both tools.

A file does not say which preprocessing made it unless we wrote it: a foreign file is used as the
protocol the caller names, and it is up to the user that the two agree (see docs/metrics.md).
"""

from __future__ import annotations

import dataclasses
import os
import zipfile

import numpy as np

from pggan.metrics.errors import MetricInputError

PROTOCOL_KEY = "pggan_protocol"
COUNT_KEY = "num_images"


@dataclasses.dataclass(frozen=True)
class FidStatistics:
    """mean float64 [D], cov float64 [D, D]; protocol and num_images as recorded (None: not recorded)."""

    mean: np.ndarray
    cov: np.ndarray
    protocol: str | None
    num_images: int | None


def save_fid_statistics(
    path: str | os.PathLike, mean: np.ndarray, cov: np.ndarray, protocol: str, num_images: int
) -> None:
    """Writes mu [D], sigma [D, D] (float64) plus our protocol name and image count, compressed.

    Raises MetricInputError (one line) when the file cannot be written.
    """
    try:
        with open(path, "wb") as f:
            np.savez_compressed(
                f,
                mu=np.asarray(mean, np.float64),
                sigma=np.asarray(cov, np.float64),
                **{PROTOCOL_KEY: np.asarray(protocol), COUNT_KEY: np.int64(num_images)},
            )
    except OSError as error:
        raise MetricInputError(f"cannot write statistics to {path}: {error.strerror or error}") from None


def load_fid_statistics(path: str | os.PathLike, dim: int, protocol: str) -> FidStatistics:
    """Reads a statistics file and checks it fits features of size `dim` made with `protocol`.

    Raises:
      MetricInputError (one line): missing or unreadable file, not an .npz, a missing `mu` or `sigma`,
        wrong shapes (another feature size), non-finite values, or a recorded protocol other than
        `protocol`.
    """
    if not os.path.isfile(path):
        raise MetricInputError(f"reference statistics {path} do not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("mu", "sigma") if k not in data.files]
            if missing:
                raise MetricInputError(
                    f"{path} lacks {' and '.join(missing)}: expected FID statistics with "
                    "arrays mu [D] and sigma [D, D] (as pytorch-fid and clean-fid write)"
                )
            mean, cov = np.asarray(data["mu"], np.float64), np.asarray(data["sigma"], np.float64)
            recorded = str(data[PROTOCOL_KEY]) if PROTOCOL_KEY in data.files else None
            count = int(data[COUNT_KEY]) if COUNT_KEY in data.files else None
    except MetricInputError:
        raise
    except (OSError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as error:
        raise MetricInputError(
            f"{path} is not a readable .npz of FID statistics ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'unreadable'})"
        ) from None
    if mean.shape != (dim,) or cov.shape != (dim, dim):
        raise MetricInputError(
            f"{path} holds statistics of {mean.shape[0] if mean.ndim == 1 else mean.shape}-d "
            f"features (mu {mean.shape}, sigma {cov.shape}); these metrics compare {dim}-d "
            f"features (mu ({dim},), sigma ({dim}, {dim})): recompute them with {dim} dims"
        )
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
        raise MetricInputError(f"{path}: mu or sigma contain NaN or infinity")
    if recorded is not None and recorded != protocol:
        raise MetricInputError(
            f"{path} holds statistics made with protocol {recorded}, not {protocol}: "
            f"evaluate with --protocol={recorded} or recompute the statistics"
        )
    return FidStatistics(mean, cov, recorded, count)
