"""Conditional generation, the hinge and WGAN-GP losses, and the exploration cells: unit tests, then reduced runs."""

import csv
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import (
    REDUCED_RUN,
    fresh_output_dir,
    notebook_env,
    run_nbconvert,
    stream_text,
    tiny_gan,
)
from PIL import Image


def linear_critic(weights):
    """A critic whose score is the dot product of the image with `weights`: its gradient is `weights` everywhere."""
    critic = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(1, use_bias=False)])
    critic.layers[-1].kernel.assign(np.reshape(weights, (784, 1)).astype("float32"))
    return critic


def images(count, seed):
    return keras.random.uniform((count, 28, 28, 1), -1, 1, seed=seed)


def test_gradient_penalty_of_a_linear_critic_is_its_norm_minus_one_squared(notebook_functions):
    weights = np.full(784, 0.1)  # norm 2.8
    penalty = notebook_functions["gradient_penalty"](linear_critic(weights), images(4, 1), images(4, 2), tf.fill((4, 1, 1, 1), 0.5))
    assert float(penalty) == pytest.approx((np.linalg.norm(weights) - 1) ** 2, rel=1e-5)


def test_gradient_penalty_is_finite_where_the_critic_is_flat(notebook_functions):
    """A zero gradient would give sqrt'(0) = inf and NaN gradients without the small constant under the root."""
    critic = linear_critic(np.zeros(784))
    with tf.GradientTape() as tape:
        penalty = notebook_functions["gradient_penalty"](critic, images(4, 1), images(4, 2), tf.fill((4, 1, 1, 1), 0.3))
    gradients = tape.gradient(penalty, critic.trainable_weights)
    assert float(penalty) == pytest.approx(1.0, abs=1e-4)
    assert all(np.all(np.isfinite(gradient)) for gradient in gradients)


def test_gradient_penalty_is_taken_between_real_and_fake(notebook_functions):
    """With the critic 0.5 ‖x‖², the gradient at x̂ is x̂ itself: mixing weight 0 gives the real images' norms,
    1 the fake ones', one weight per image."""
    critic = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Lambda(lambda x: 0.5 * keras.ops.sum(x**2, axis=[1, 2, 3]))])
    real, fake = tf.fill((2, 28, 28, 1), 0.1), tf.fill((2, 28, 28, 1), 0.05)
    mix = tf.reshape(tf.constant([0.0, 1.0]), (2, 1, 1, 1))
    penalty = notebook_functions["gradient_penalty"](critic, real, fake, mix)
    expected = np.mean([(0.1 * 28 - 1) ** 2, (0.05 * 28 - 1) ** 2])
    assert float(penalty) == pytest.approx(expected, rel=1e-5)


def test_r1_penalty_of_a_linear_discriminator_is_half_its_weight_times_its_squared_slope(notebook_functions):
    weights = np.full(784, 0.1)  # squared norm 7.84 at every image
    penalty = notebook_functions["r1_penalty"](0.5, linear_critic(weights), images(4, 1))
    assert float(penalty) == pytest.approx(0.5 / 2 * 7.84, rel=1e-5)


def test_r1_penalty_comes_once_every_r1_every_steps_at_that_many_times_the_weight(notebook_functions):
    gan = tiny_gan(notebook_functions, r1=0.5)
    every, real, fake = notebook_functions["R1_EVERY"], images(4, 1), images(4, 2)
    with tf.GradientTape() as tape:
        due = gan.penalty(real, fake, None)  # the optimiser has taken no step yet: step 0 is due
    expected = notebook_functions["r1_penalty"](every * 0.5, gan.discriminator, real)
    assert float(due) == pytest.approx(float(expected), rel=1e-5) and float(due) > 0
    slopes_gradients = tape.gradient(due, gan.discriminator.trainable_weights)
    assert any(float(tf.reduce_max(tf.abs(gradient))) > 0 for gradient in slopes_gradients if gradient is not None)
    gan.d_optimizer.iterations.assign(every + 3)
    assert float(gan.penalty(real, fake, None)) == 0.0
    gan.d_optimizer.iterations.assign(2 * every)
    assert float(gan.penalty(real, fake, None)) == pytest.approx(float(expected), rel=1e-5)
    assert tiny_gan(notebook_functions, r1=0.0).penalty(real, fake, None) == 0.0  # off


def test_a_train_step_with_the_r1_penalty_stays_finite(notebook_functions):
    gan = tiny_gan(notebook_functions, r1=10.0, cluster_shares=np.full(5, 0.2))
    logs = gan.train_step((images(8, 3), tf.constant([0, 1, 2, 3, 4, 0, 1, 2], "int32")))
    assert int(gan.d_optimizer.iterations) == 1 and all(np.isfinite(float(value)) for value in logs.values())


def test_the_learning_rate_holds_for_half_of_training_then_falls_in_a_straight_line(notebook_functions):
    decayed_rate = notebook_functions["decayed_rate"]
    assert [decayed_rate(8e-4, 0.25, progress) for progress in (0.0, 0.5, 0.75, 1.0)] == pytest.approx([8e-4, 8e-4, 5e-4, 2e-4])
    assert decayed_rate(8e-4, 1.0, 0.9) == pytest.approx(8e-4)  # a share of 1 keeps the rate constant


def test_mode_seeking_term_is_the_style_gap_over_the_image_gap(notebook_functions):
    term = notebook_functions["mode_seeking_term"]
    noise_1, noise_2 = tf.constant([[5.0, 0, 0], [-5.0, 0, 0]]), tf.constant([[9.0, 1, 1], [9.0, -1, 1]])  # style gap 1
    dark, grey = tf.fill((2, 28, 28, 1), -1.0), tf.fill((2, 28, 28, 1), -0.5)  # image gap 0.5
    assert float(term(dark, grey, noise_1, noise_2)) == pytest.approx(1 / (0.5 + 1e-5), rel=1e-5)
    assert float(term(dark, dark, noise_1, noise_2)) == pytest.approx(1e5, rel=1e-5)  # one image for two styles: dear


def test_mode_seeking_changes_the_generators_step(notebook_functions):
    batch = (images(8, 3), tf.constant([0, 1, 2, 3, 4, 0, 1, 2], "int32"))
    steps = {}
    for weight in (1e-9, 1.0):  # the same noise pairs either way: only the term's weight differs
        gan = tiny_gan(notebook_functions, cluster_shares=np.full(5, 0.2), mode_seeking=weight)
        logs = gan.train_step(batch)
        assert all(np.isfinite(float(value)) for value in logs.values())
        steps[weight] = np.concatenate([np.ravel(array) for array in gan.generator.get_weights()])
    assert not np.allclose(steps[1e-9], steps[1.0], atol=1e-6)


@pytest.mark.parametrize(
    ("loss", "d_expected", "g_expected"),
    [
        ("hinge", 0.5, 0.5),  # real 2 is past the +1 margin; fake -0.5 falls 0.5 short of -1
        ("wgan-gp", -0.5 - 2.0, 0.5),
        ("nonsaturating", float(np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-0.5))), float(np.log1p(np.exp(0.5)))),
    ],
)
def test_losses_on_known_scores(notebook_functions, loss, d_expected, g_expected):
    real, fake = tf.constant([[2.0]]), tf.constant([[-0.5]])
    assert float(notebook_functions["discriminator_loss"](loss, real, fake)) == pytest.approx(d_expected, rel=1e-5)
    assert float(notebook_functions["generator_loss"](loss, fake)) == pytest.approx(g_expected, rel=1e-5)


def tiny_conditional_gan(functions, loss, critic_steps=1):
    """A compiled conditional GAN on 8-d noise with 4-filter networks."""
    return tiny_gan(functions, ema=0.9, loss=loss, critic_steps=critic_steps, conditional=True)


def test_conditional_networks_take_labels(notebook_functions):
    gan = tiny_conditional_gan(notebook_functions, "nonsaturating")
    noise, labels = np.zeros((3, 8), "float32"), np.array([0, 4, 9], "int32")
    digits = gan.generator.predict([noise, labels], verbose=0)
    assert digits.shape == (3, 28, 28, 1)
    assert gan.discriminator.predict([digits, labels], verbose=0).shape == (3, 1)
    other_digits = gan.generator.predict([noise, np.array([1, 5, 8], "int32")], verbose=0)
    assert not np.allclose(digits, other_digits), "the label must change the digit drawn from the same noise"


def test_wgan_gp_step_updates_the_critic_several_times_per_generator_update(notebook_functions):
    gan = tiny_conditional_gan(notebook_functions, "wgan-gp", critic_steps=3)
    batch = (images(6, 3), tf.constant([0, 1, 2, 3, 4, 5], "int32"))  # 3 slices of 2, one per critic update
    logs = gan.train_step(batch)
    assert int(gan.d_optimizer.iterations) == 3 and int(gan.g_optimizer.iterations) == 1
    assert all(np.isfinite(float(value)) for value in logs.values())


def test_slerp_keeps_the_ends_and_walks_the_great_circle(notebook_functions):
    start, end = np.array([3.0, 0.0]), np.array([0.0, 3.0])
    points = notebook_functions["slerp"](start, end, [0.0, 0.5, 1.0])
    np.testing.assert_allclose(points[0], start, atol=1e-6)
    np.testing.assert_allclose(points[2], end, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(points, axis=1), 3.0, rtol=1e-6)  # a straight line would dip to 2.12


def test_interpolating_digits_starts_and_ends_at_the_two_labels(notebook_functions):
    generator = tiny_conditional_gan(notebook_functions, "nonsaturating").generator
    noise = np.random.default_rng(0).standard_normal(8).astype("float32")
    strip = notebook_functions["interpolate_digits"](generator, noise, 2, 7, steps=5)
    assert strip.shape == (5, 28, 28, 1)
    ends = generator.predict([np.stack([noise, noise]), np.array([2, 7], "int32")], verbose=0)
    np.testing.assert_allclose(strip[[0, -1]], ends, atol=1e-5)


@pytest.mark.parametrize("file_format", ["png", "npz"])
def test_export_writes_readable_digits_that_the_seed_repeats(notebook_functions, tmp_path, file_format):
    generator = tiny_conditional_gan(notebook_functions, "nonsaturating").generator
    export = notebook_functions["export_digits"]
    paths = export(generator, 12, 5, tmp_path / "first", file_format, True)
    again = export(generator, 12, 5, tmp_path / "again", file_format, True)
    if file_format == "png":
        assert [path.name for path in paths[:2]] == ["digit_00000_label_0.png", "digit_00001_label_1.png"]
        assert len(list((tmp_path / "first").glob("*.png"))) == 12
        first = np.stack([np.asarray(Image.open(path)) for path in paths])
        second = np.stack([np.asarray(Image.open(path)) for path in again])
    else:
        with np.load(paths[0]) as archive, np.load(again[0]) as archive_again:
            first, second = archive["images"], archive_again["images"]
            np.testing.assert_array_equal(archive["labels"], np.arange(12) % 10)
            assert archive["noise"].shape == (12, 8)
    assert first.shape == (12, 28, 28) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, second)


# Reduced headless runs: one per option, each scored by the evaluator the shared reduced run trained.
OPTION_RUNS = {
    "conditional": {"MNIST_GAN_CONDITIONAL": "True"},
    # The hinge run is also the plain DCGAN's: without clusters.
    "hinge": {"MNIST_GAN_LOSS": "hinge", "MNIST_GAN_EXPORT_FORMAT": "npz", "MNIST_GAN_EXPORT_COUNT": "20", "MNIST_GAN_CLUSTERS": "0"},
    "wgan-gp": {"MNIST_GAN_LOSS": "wgan-gp", "MNIST_GAN_CONDITIONAL": "True", "MNIST_GAN_CRITIC_STEPS": "2"},
}


@pytest.fixture(scope="module", params=sorted(OPTION_RUNS))
def option_run(request, tmp_path_factory):
    """(option, output_dir, executed notebook) of a reduced run with one option switched on."""
    folder = tmp_path_factory.mktemp(request.param)
    output_dir = fresh_output_dir(folder)
    env = notebook_env(output_dir, **{**REDUCED_RUN, "MNIST_GAN_EPOCHS": "1", **OPTION_RUNS[request.param]})
    result = run_nbconvert(folder, env)
    assert result.returncode == 0, result.stderr[-5000:]
    return request.param, output_dir, folder / "run.ipynb"


def test_option_run_trains_and_writes_every_artifact(option_run):
    option, output_dir, notebook = option_run
    with open(output_dir / "history.csv", newline="") as history_file:
        (row,) = csv.DictReader(history_file)
    assert all(np.isfinite(float(row[name])) for name in ("d_loss", "g_loss", "D(x)", "D(G(z))"))
    conditional = "CONDITIONAL" in str(OPTION_RUNS[option])
    grid = np.asarray(Image.open(output_dir / "grids" / "epoch_001.png"))
    assert grid.shape == ((10 if conditional else 8) * 28, 8 * 28)
    assert np.asarray(Image.open(output_dir / "interpolation.png")).shape == (4 * 28, 10 * 28)
    assert (output_dir / "digit_interpolation.png").is_file() == conditional
    if option == "hinge":
        with np.load(output_dir / "digits" / "digits.npz") as archive:
            assert archive["images"].shape == (20, 28, 28) and "labels" not in archive
    else:
        assert len(list((output_dir / "digits").glob("digit_*_label_*.png"))) == 100
    printed = stream_text(notebook)
    kind = f"{'a conditional' if conditional else 'a'} GAN with the {option if option != 'conditional' else 'nonsaturating'} loss"
    assert f"Training {kind}" in printed


def test_conditional_runs_save_a_generator_of_noise_and_labels(option_run):
    option, output_dir, _ = option_run
    scores = json.loads((output_dir / "scores.json").read_text())
    generator = keras.models.load_model(output_dir / "generator.keras")
    noise = np.random.default_rng(0).standard_normal((5, 16)).astype("float32")
    if option == "hinge":
        assert "label_accuracy" not in scores
        assert generator.predict(noise, verbose=0).shape == (5, 28, 28, 1)
        return
    assert 0 <= scores["label_accuracy"] <= 1 and 0 <= scores["raw_generator"]["label_accuracy"] <= 1
    assert scores["reference"]["label_accuracy"] > 0.9  # real digits with their own labels
    digits = generator.predict([noise, np.array([0, 3, 5, 7, 9], "int32")], verbose=0)
    assert digits.shape == (5, 28, 28, 1)
