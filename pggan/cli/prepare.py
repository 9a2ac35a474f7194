r"""Prepares a training dataset: every level of detail 4x4 .. RxR, stored for fast random access.

Examples:
  # your photos, centre-cropped and resized to 256x256, as dataset 'my_photos'
  pggan-prepare --source=folder:~/photos --resolution=256 --name=my_photos
  # catalog datasets through tensorflow-datasets (preparing most of them needs `pip install '.[prepare]'`)
  pggan-prepare --source=tfds:celeb_a_hq/1024 --manual_dir=~/celeba_hq_archives
  pggan-prepare --source=tfds:lsun/bedroom
  pggan-prepare --source=tfds:cifar10
  # the quickstart digits and synthetic benchmark images (no download)
  pggan-prepare --source=digits
  pggan-prepare --source=synthetic --resolution=1024 --num_examples=500

The result is <data_dir>/<name>/1.0.0 (a tensorflow-datasets dataset with one split per level).
Unreadable images are skipped and listed at the end. An interrupted run resumes when run again with
the same flags.
"""

import sys

from absl import flags

from pggan.cli.runner import run_program
from pggan.data import builder, dataset, source_specs
from pggan.errors import UserError

_SOURCE = flags.DEFINE_string(
    "source",
    None,
    "What to prepare: folder:<path> (images searched recursively), digits, synthetic, "
    "or tfds:<name>[/<config>] (celeb_a_hq/<res>, lsun/<category>, celeb_a, cifar10, mnist, ...).",
)
_NAME = flags.DEFINE_string("name", None, "Dataset name ([a-z][a-z0-9_]*). Default: derived from the source.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Where prepared datasets live. Default: $TFDS_DATA_DIR or ~/tensorflow_datasets."
)
_RESOLUTION = flags.DEFINE_integer(
    "resolution",
    None,
    "Target resolution, a power of two in [4, 1024]. Required for "
    "folders; default 32 for synthetic, the natural size for catalog datasets.",
)
_CROP = flags.DEFINE_enum(
    "crop",
    "center",
    ["center", "pad"],
    "Folder images: keep the central square, or pad the image to a square with black.",
)
_CHANNELS = flags.DEFINE_enum("channels", "3", ["1", "3"], "Folder images: 3 (RGB) or 1 (grayscale).")
_LABELS_FROM_SUBFOLDERS = flags.DEFINE_bool(
    "labels_from_subfolders", False, "Folder images: label each image by its top-level subfolder (class names sorted)."
)
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", 1000, "Synthetic: number of images.")
_SEED = flags.DEFINE_integer("seed", 0, "Synthetic: seed of the generated images.")
_MAX_EXAMPLES = flags.DEFINE_integer("max_examples", None, "Keep only this many images (a fixed random subset).")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "tfds: folder with manually downloaded files (celeb_a_hq).")
_TFDS_DATA_DIR = flags.DEFINE_string(
    "tfds_data_dir", None, "tfds: where tfds keeps catalog datasets. Default: --data_dir."
)
_NUM_WORKERS = flags.DEFINE_integer(
    "num_workers",
    None,
    "Processes writing shards in parallel. Default: one per CPU core (one in all for small sources).",
)

flags.mark_flag_as_required("source")


def main(argv):
    del argv
    data_dir = _DATA_DIR.value or dataset.default_data_dir()
    try:
        source = source_specs.make_source(
            _SOURCE.value,
            resolution=_RESOLUTION.value,
            num_examples=_NUM_EXAMPLES.value,
            crop=_CROP.value,
            channels=int(_CHANNELS.value),
            seed=_SEED.value,
            labels_from_subfolders=_LABELS_FROM_SUBFOLDERS.value,
            tfds_data_dir=_TFDS_DATA_DIR.value or data_dir,
            manual_dir=_MANUAL_DIR.value,
        )
        summary = builder.prepare_dataset(
            source, data_dir, _NAME.value, num_workers=_NUM_WORKERS.value, max_examples=_MAX_EXAMPLES.value
        )
    except UserError as error:
        sys.exit(f"error: {error}")
    except KeyboardInterrupt:
        sys.exit("interrupted: run the same command again to finish the preparation")
    print(summary.report())


def entry_point() -> None:
    """The console script `pggan-prepare`."""
    run_program(main, __name__)


if __name__ == "__main__":
    entry_point()
