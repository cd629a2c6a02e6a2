"""CLUSTERS: k-means groups of look-alike digits that both networks see, and a generator that still takes noise alone."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_gan, tiny_generator

SHARES = np.array([0.2, 0.3, 0.5])


def three_kinds_of_image(per_kind, seed=0):
    """Noisy uint8 images of three kinds (a bright top band, left band or centre square), kind by kind."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, (3 * per_kind, 28, 28)).astype("uint8")
    images[:per_kind, :8, :] = 255
    images[per_kind : 2 * per_kind, :, :8] = 255
    images[2 * per_kind :, 10:18, 10:18] = 255
    return images, np.repeat([0, 1, 2], per_kind)


def test_k_means_finds_the_three_kinds_of_image(notebook_functions):
    images, kinds = three_kinds_of_image(40)
    groups = notebook_functions["cluster_digits"](images, 3, seed=5)
    assert groups.dtype == np.int32 and groups.shape == (120,)
    assert notebook_functions["label_purity"](groups, kinds) == 1.0
    assert sorted(np.bincount(groups)) == [40, 40, 40]
    np.testing.assert_array_equal(groups, notebook_functions["cluster_digits"](images, 3, seed=5))


def test_k_means_with_more_groups_than_kinds_splits_them_without_mixing(notebook_functions):
    images, kinds = three_kinds_of_image(40)
    groups = notebook_functions["cluster_digits"](images, 6, seed=1)
    assert set(np.unique(groups)) <= set(range(6)) and len(np.unique(groups)) > 3
    assert notebook_functions["label_purity"](groups, kinds) == 1.0


def ink_centre_per_row(images, rows):
    """The ink's mean column in each of `rows` of each image."""
    columns = np.arange(28)
    return np.array([[(image[row] * columns).sum() / image[row].sum() for row in rows] for image in images])


def test_deskew_stands_a_slanted_stroke_upright_and_keeps_its_ink(notebook_functions):
    slanted = np.zeros((1, 28, 28), "uint8")
    for row in range(4, 24):  # a bar three pixels wide whose column grows by one every two rows
        slanted[0, row, 8 + (row - 4) // 2 : 11 + (row - 4) // 2] = 255
    upright = notebook_functions["deskew"](slanted)
    assert upright.shape == (1, 28, 28) and upright.dtype == np.float32
    assert np.ptp(ink_centre_per_row(slanted.astype("float32"), range(6, 22))) > 6
    assert np.ptp(ink_centre_per_row(upright, range(6, 22))) < 1.5  # now every row's ink sits at one column
    assert upright.sum() == pytest.approx(slanted.sum(), rel=0.05)
    assert not notebook_functions["deskew"](np.zeros((2, 28, 28), "uint8")).any()  # blank images stay blank


def test_label_purity_counts_the_most_common_label_of_each_group(notebook_functions):
    groups = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    labels = np.array([7, 7, 2, 3, 3, 3, 9, 9])
    assert notebook_functions["label_purity"](groups, labels) == pytest.approx((2 + 3) / 8)


def test_the_first_noise_entry_picks_each_cluster_as_often_as_its_share(notebook_functions):
    generator = tiny_generator(notebook_functions, 8, cluster_shares=SHARES)
    assert generator.input_shape == (None, 8)
    noise = np.random.default_rng(0).standard_normal((40000, 8)).astype("float32")
    clusters = np.asarray(notebook_functions["clusters_picked"](generator, noise))
    np.testing.assert_allclose(np.bincount(clusters, minlength=3) / len(clusters), SHARES, atol=0.01)
    # Only the first entry picks: noise that differs elsewhere stays in the same cluster.
    shuffled_rest = np.concatenate([noise[:, :1], noise[::-1, 1:]], axis=1)
    np.testing.assert_array_equal(np.asarray(notebook_functions["clusters_picked"](generator, shuffled_rest)), clusters)


def test_clustered_generator_saves_and_loads_as_a_generator_of_noise(notebook_functions, tmp_path):
    generator = tiny_generator(notebook_functions, 8, cluster_shares=SHARES)
    noise = np.random.default_rng(1).standard_normal((5, 8)).astype("float32")
    digits = generator.predict(noise, verbose=0)
    assert digits.shape == (5, 28, 28, 1)
    generator.save(tmp_path / "generator.keras")
    loaded = keras.models.load_model(tmp_path / "generator.keras")
    np.testing.assert_allclose(loaded.predict(noise, verbose=0), digits, atol=1e-6)
    np.testing.assert_array_equal(
        np.asarray(notebook_functions["clusters_picked"](loaded, noise)),
        np.asarray(notebook_functions["clusters_picked"](generator, noise)),
    )


def test_the_cluster_changes_the_digit_drawn(notebook_functions):
    generator = tiny_generator(notebook_functions, 8, cluster_shares=SHARES)
    style = np.random.default_rng(2).standard_normal((1, 7)).astype("float32")
    first_entries = np.array([[-2.0], [-0.4], [2.0]], "float32")  # clusters 0, 1 and 2 (cut at -0.84 and 0)
    noise = np.concatenate([first_entries, np.repeat(style, 3, axis=0)], axis=1)
    np.testing.assert_array_equal(np.asarray(notebook_functions["clusters_picked"](generator, noise)), [0, 1, 2])
    digits = generator.predict(noise, verbose=0)
    assert not np.allclose(digits[0], digits[1]) and not np.allclose(digits[1], digits[2])


def test_clustered_step_trains_both_networks_on_images_and_their_clusters(notebook_functions):
    gan = tiny_gan(notebook_functions, ema=0.9, cluster_shares=SHARES)
    assert gan.discriminator.input_shape == [(None, 28, 28, 1), (None,)]
    batch = (keras.random.uniform((6, 28, 28, 1), -1, 1, seed=3), tf.constant([0, 1, 2, 2, 1, 0], "int32"))
    before = [np.array(weight) for weight in gan.generator.trainable_weights]
    logs = gan.train_step(batch)
    assert int(gan.d_optimizer.iterations) == 1 and int(gan.g_optimizer.iterations) == 1
    assert all(np.isfinite(float(value)) for value in logs.values())
    assert any(not np.allclose(old, new) for old, new in zip(before, gan.generator.trainable_weights, strict=True))
    assert gan.drawing_generator.predict(np.zeros((2, 8), "float32"), verbose=0).shape == (2, 28, 28, 1)


class RecordingGenerator:
    """Stands in for a generator: remembers the noise it is asked to draw and returns blank digits."""

    def predict(self, noise, batch_size=None, verbose=0):
        self.noise = np.asarray(noise)
        return np.zeros((len(self.noise), 28, 28, 1), "float32")


def test_latent_walk_keeps_the_first_entry_and_so_its_cluster(notebook_functions):
    generator = tiny_generator(notebook_functions, 8, cluster_shares=SHARES)
    starts_and_ends = np.random.default_rng(4).standard_normal((3, 2, 8)).astype("float32")
    recorder = RecordingGenerator()
    notebook_functions["interpolation_strips"](recorder, list(starts_and_ends), steps=6, kept_entries=1)
    walks = recorder.noise.reshape(3, 6, 8)
    for (start, end), walk in zip(starts_and_ends, walks, strict=True):
        np.testing.assert_allclose(walk[:, 0], start[0])  # the entry that picks the cluster never moves
        np.testing.assert_allclose(walk[0, 1:], start[1:], atol=1e-6)
        np.testing.assert_allclose(walk[-1, 1:], end[1:], atol=1e-5)
        clusters = np.asarray(notebook_functions["clusters_picked"](generator, walk))
        assert len(set(clusters.tolist())) == 1
        steps = np.linalg.norm(np.diff(walk[:, 1:], axis=0), axis=1)
        assert steps.max() < 2 * steps.mean(), "a smooth walk has no jumps"
        # Along the great circle the noise keeps its length; a straight line would dip towards the origin.
        assert np.linalg.norm(walk[:, 1:], axis=1).min() > 0.8 * min(np.linalg.norm(start[1:]), np.linalg.norm(end[1:]))
