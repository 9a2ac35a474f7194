"""The stream order: a per-epoch permutation, identical in NumPy and in jitted jax.numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pggan.data import order


@pytest.mark.parametrize("num_examples", [1, 2, 3, 4, 5, 16, 17, 1000, 4097])
def test_each_epoch_is_a_permutation(num_examples):
    for epoch in (0, 1, 7):
        indices = order.permute(np, np.arange(num_examples, dtype=np.uint32), num_examples, 3, epoch)
        np.testing.assert_array_equal(np.sort(indices), np.arange(num_examples))


def test_epochs_and_seeds_reshuffle():
    n = 1000
    stream = order.example_indices(np, np.arange(3 * n), n, 0).reshape(3, n)
    assert all(sorted(epoch) == list(range(n)) for epoch in stream.tolist())
    assert (stream[0] != stream[1]).mean() > 0.9
    other_seed = order.example_indices(np, np.arange(n), n, 1)
    assert (stream[0] != other_seed).mean() > 0.9
    # not a near-identity: few positions keep their index and neighbours are far apart
    assert (stream[0] == np.arange(n)).mean() < 0.02
    assert np.abs(np.diff(stream[0].astype(int))).mean() > n / 5


@pytest.mark.parametrize("num_examples", [10, 1797, 65536])
def test_jax_numpy_gives_the_same_indices_under_jit(num_examples):
    positions = np.arange(num_examples - 50, num_examples + 50)  # crosses an epoch boundary
    want = order.example_indices(np, positions, num_examples, 2018)
    got = jax.jit(lambda p, seed: order.example_indices(jnp, p, num_examples, seed))(
        jnp.asarray(positions, jnp.uint32), jnp.uint32(2018)
    )
    np.testing.assert_array_equal(np.asarray(got), want)


def test_golden_values_keep_old_checkpoints_resumable():
    """Changing the permutation would silently change where restored runs continue: keep these."""
    assert order.example_indices(np, np.arange(12), 10, 2018).tolist() == [6, 3, 7, 0, 2, 9, 1, 8, 5, 4, 9, 7]
    assert order.example_indices(np, np.arange(8), 1797, 0).tolist() == [1092, 803, 796, 1636, 1248, 763, 1291, 1597]


def test_rejects_impossible_sizes():
    with pytest.raises(ValueError, match="num_examples"):
        order.permute(np, np.arange(1), 0, 0, 0)
