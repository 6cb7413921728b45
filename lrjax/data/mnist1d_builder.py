"""MNIST-1D (Greydanus 2020, "Scaling down deep learning") as an offline TFDS dataset.

The data are *generated*, not downloaded, by the ``mnist1d`` package from PyPI
(``pip install mnist1d==0.0.2.post1``; generated and checked with that version).
Ten hand-written 12-point 1-D templates (one per digit, in the package's code:
``mnist1d.data.get_templates``) are each randomly padded, dilated, scaled,
translated (circularly), filled with correlated and i.i.d. gaussian noise,
sheared and resampled to 40 points (``mnist1d.transform.transform``).

Generation, exactly::

    args = mnist1d.data.get_dataset_args()   # the package's defaults (see below)
    args.num_samples = 10_000                # paper default: 5_000
    args.seed = 42                           # = the package default
    data = mnist1d.data.make_dataset(args)   # never get_dataset(): it downloads

with every other argument left at its default: ``train_split=0.8``,
``template_len=12``, ``padding=[36, 60]``, ``scale_coeff=0.4``,
``max_translation=48``, ``corr_noise_scale=0.25``, ``iid_noise_scale=0.02``,
``shear_scale=0.75``, ``shuffle_seq=False``, ``final_seq_length=40``.
``make_dataset`` makes exactly 1,000 examples per class, shuffles them with the
seeded global numpy RNG, and standardizes the whole array (all 10,000 examples
together, as the package does) to mean 0 and standard deviation 1. The values are
stored as they come, cast from float64 to float32 (range about -5.5..4.5).

Splits, in the generated (already shuffled) order, with no further shuffling:

* ``train``: examples 0..5,999 (6,000; the first 6,000 of the package's ``x``),
* ``validation``: examples 6,000..7,999 (2,000; the last 2,000 of ``x``),
* ``test``: examples 8,000..9,999 (2,000; exactly the package's ``x_test``).

Note these are not the same examples as the paper's 4,000/1,000 set: changing
``num_samples`` changes the random stream. Classes are balanced overall
(1,000 each) and roughly per split (about 185-215 per class in test).

Records are stored in that order (``disable_shuffling=True``), so reading a
split back gives ``mnist1d_arrays()[split]`` exactly, in order.

Features: ``image`` is ``tfds.features.Tensor`` float32 of shape (40, 1, 1), the
sequence laid out NHWC-like (H=40, W=1, C=1) so an image engine can take it;
``label`` is ``ClassLabel(10)``. File format ``array_record``: builds and reads
without TensorFlow.
"""

from __future__ import annotations

import random

import numpy as np
import tensorflow_datasets as tfds

NUM_SAMPLES = 10_000
SEED = 42
SEQ_LEN = 40
SPLIT_SIZES = {"train": 6000, "validation": 2000, "test": 2000}


def mnist1d_arrays() -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Returns the fixed splits as ``{split: (float32 (N, 40, 1, 1), int64 (N,))}``.

  Generates the data offline with ``mnist1d.data.make_dataset`` (about 2 s). The
  global ``random`` / ``numpy.random`` states, which ``make_dataset`` reseeds, are
  restored afterwards.

  Example:
    >>> splits = mnist1d_arrays()
    >>> splits["train"][0].shape, splits["validation"][0].dtype
    ((6000, 40, 1, 1), dtype('float32'))
  """
  # Imported lazily: pulls in scipy and matplotlib. Only make_dataset is used;
  # mnist1d.data.get_dataset would download a pickle from GitHub.
  from mnist1d.data import get_dataset_args, make_dataset

  args = get_dataset_args()
  args.num_samples = NUM_SAMPLES
  args.seed = SEED
  np_state, py_state = np.random.get_state(), random.getstate()
  try:
    data = make_dataset(args)
  finally:
    np.random.set_state(np_state)
    random.setstate(py_state)
  xs = np.concatenate([data["x"], data["x_test"]]).astype(np.float32)
  ys = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
  assert xs.shape == (NUM_SAMPLES, SEQ_LEN), xs.shape
  xs = xs.reshape(NUM_SAMPLES, SEQ_LEN, 1, 1)
  out, start = {}, 0
  for split, size in SPLIT_SIZES.items():
    out[split] = (xs[start:start + size], ys[start:start + size])
    start += size
  assert start == NUM_SAMPLES, "split sizes must cover the dataset"
  return out


class Mnist1d(tfds.core.GeneratorBasedBuilder):
  """MNIST-1D, generated offline by the ``mnist1d`` package, as a TFDS dataset."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {
      "1.0.0": "mnist1d 0.0.2.post1, num_samples=10000, seed=42; "
               "6000/2000/2000 train/validation/test."
  }

  def __init__(self, **kwargs):
    kwargs.setdefault("file_format", "array_record")
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    # tfds.core.DatasetInfo directly, not dataset_info_from_configs: the latter
    # reads package metadata files next to the module, and this builder needs none.
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(SEQ_LEN, 1, 1), dtype=np.float32),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
        # Keep the generated order on disk (it is already shuffled by
        # make_dataset), so that reading a split returns mnist1d_arrays()[split].
        disable_shuffling=True,
        homepage="https://github.com/greydanus/mnist1d",
        citation="""@article{greydanus2020scaling,
  title={Scaling down deep learning},
  author={Greydanus, Sam},
  journal={arXiv preprint arXiv:2011.14439},
  year={2020}}""",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: the data are generated by code.
    arrays = mnist1d_arrays()
    return {split: self._generate_examples(*arrays[split]) for split in SPLIT_SIZES}

  def _generate_examples(self, xs, labels):
    for i, (x, label) in enumerate(zip(xs, labels)):
      yield i, {"image": x, "label": label}
