"""The moving-average generator, mixed precision and the several-device path, in small pieces."""

import csv
import json

import keras
import numpy as np
import pytest
from conftest import (
    REDUCED_RUN,
    fresh_output_dir,
    notebook_env,
    run_nbconvert,
    stream_text,
    tiny_gan,
)


def set_all(weights, value):
    for weight in weights:
        weight.assign(np.full(weight.shape, value, weight.dtype))


def test_moving_average_starts_as_a_copy_and_follows_the_generator(notebook_functions):
    gan = tiny_gan(notebook_functions, ema=0.9)
    assert gan.drawing_generator is gan.ema_generator
    for average, weight in zip(gan.ema_generator.get_weights(), gan.generator.get_weights(), strict=True):
        np.testing.assert_array_equal(average, weight)

    set_all(gan.generator.weights, 1.0)
    set_all(gan.ema_generator.weights, 0.0)
    gan.g_optimizer.iterations.assign(1000)  # past the warm-up: the decay is EMA itself
    gan.update_moving_average()
    for average in gan.ema_generator.get_weights():
        np.testing.assert_allclose(average, 0.1, rtol=1e-5)

    set_all(gan.ema_generator.weights, 0.0)
    gan.g_optimizer.iterations.assign(0)  # first step: decay min(0.9, 1/10) = 0.1 forgets the start
    gan.update_moving_average()
    for average in gan.ema_generator.get_weights():
        np.testing.assert_allclose(average, 0.9, rtol=1e-5)


def test_train_step_moves_the_average_only_part_of_the_way(notebook_functions):
    gan = tiny_gan(notebook_functions, ema=0.5)
    gan.g_optimizer.iterations.assign(1000)
    before = gan.generator.get_weights()
    gan.train_step(keras.random.uniform((4, 28, 28, 1), -1, 1, seed=3))
    after = gan.generator.get_weights()
    changed = [index for index, (a, b) in enumerate(zip(before, after, strict=True)) if not np.array_equal(a, b)]
    assert changed, "the generator did not train"
    for index in changed:
        expected = 0.5 * before[index] + 0.5 * after[index]
        np.testing.assert_allclose(gan.ema_generator.get_weights()[index], expected, rtol=1e-4, atol=1e-6)


def test_without_ema_the_trained_generator_draws(notebook_functions):
    gan = tiny_gan(notebook_functions, ema=0.0)
    assert gan.ema_generator is None
    assert gan.drawing_generator is gan.generator


def train_under(policy, notebook_functions):
    """A tiny GAN built and trained two steps (the first with the R1 penalty) under Keras policy `policy`; returns the
    GAN and its last step's logs. The policy goes back to float32 afterwards."""
    make_optimizer = notebook_functions["make_optimizer"]
    keras.mixed_precision.set_global_policy(policy)
    try:
        generator, discriminator = notebook_functions["make_generator"](8, 4), notebook_functions["make_discriminator"](4, 0.0)
        gan = notebook_functions["GAN"](generator, discriminator, 8, 1, ema=0.9, r1=0.1)
        gan.compile(d_optimizer=make_optimizer(1e-3, 0.5), g_optimizer=make_optimizer(1e-3, 0.5))
        for _ in range(2):
            logs = gan.train_step(keras.random.uniform((4, 28, 28, 1), -1, 1, seed=3))
        return gan, logs
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize(("policy", "optimizer_type", "compute_dtype"), [
    ("mixed_float16", keras.optimizers.LossScaleOptimizer, "float16"),  # what the notebook sets when it finds a GPU
    ("mixed_bfloat16", keras.optimizers.Adam, "bfloat16"),  # on a CPU with bfloat16: float32's range, nothing to scale
])
def test_mixed_precision_trains_with_float32_outputs(notebook_functions, policy, optimizer_type, compute_dtype):
    """16-bit layers; float32 pixels, logits and weights; loss scaling only for float16; finite losses."""
    gan, logs = train_under(policy, notebook_functions)
    assert isinstance(gan.g_optimizer, optimizer_type)
    assert gan.generator.layers[1].compute_dtype == compute_dtype
    assert all(np.isfinite(float(value)) for value in logs.values())
    assert gan.generator(np.zeros((2, 8), "float32")).dtype == "float32"
    assert gan.discriminator(np.zeros((2, 28, 28, 1), "float32")).dtype == "float32"
    assert {weight.dtype for weight in gan.ema_generator.weights} == {"float32"}


@pytest.mark.parametrize(("flags", "expected"), [("fpu avx2 avx512f avx512_bf16 fma", True), ("fpu avx2 amx_bf16 amx_tile", True),
                                                 ("fpu avx2 avx512f fma", False)])
def test_bfloat16_only_where_the_cpu_lists_it(notebook_functions, tmp_path, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    assert notebook_functions["cpu_computes_bfloat16"](cpuinfo) is expected
    assert notebook_functions["cpu_computes_bfloat16"](tmp_path / "no_such_file") is False  # macOS, Windows


def test_optimizer_is_plain_adam_in_float32(notebook_functions):
    assert keras.mixed_precision.global_policy().name == "float32"
    optimizer = notebook_functions["make_optimizer"](3e-4, 0.5)
    assert type(optimizer) is keras.optimizers.Adam
    assert float(optimizer.learning_rate) == pytest.approx(3e-4)
    assert float(optimizer.beta_1) == 0.5


def test_two_cpu_devices_train_one_replica_each(notebook_functions, tmp_path):
    """MirroredStrategy over the CPU split in two: the path several GPUs take, run headless end to end."""
    output_dir = fresh_output_dir(tmp_path)
    env = notebook_env(output_dir, **REDUCED_RUN, MNIST_GAN_TEST_CPU_REPLICAS="2")
    result = run_nbconvert(tmp_path, env)
    assert result.returncode == 0, result.stderr[-5000:]
    printed = stream_text(tmp_path / "run.ipynb")
    precision = "mixed_bfloat16" if notebook_functions["cpu_computes_bfloat16"]() else "float32"
    assert f"Training on the CPU: 2 replica(s), {precision} computation." in printed
    assert "INFO:tensorflow" not in printed

    with open(output_dir / "history.csv", newline="") as history_file:
        rows = list(csv.DictReader(history_file))
    assert [row["epoch"] for row in rows] == ["1", "2"]
    for row in rows:
        assert all(np.isfinite(float(row[name])) for name in ("d_loss", "g_loss", "D(x)", "D(G(z))"))
    generator = keras.models.load_model(output_dir / "generator.keras")
    digits = generator.predict(np.random.default_rng(0).standard_normal((3, 16)).astype("float32"), verbose=0)
    assert digits.shape == (3, 28, 28, 1)
    assert np.isfinite(json.loads((output_dir / "scores.json").read_text())["fd"])


def test_reduced_run_saves_the_average_and_scores_both(reduced_run):
    """With the default EMA, generator.keras is the moving average, and scores.json also scores the raw one."""
    output_dir, _ = reduced_run
    scores = json.loads((output_dir / "scores.json").read_text())
    assert np.isfinite(scores["raw_generator"]["fd"]) and np.isfinite(scores["raw_generator"]["classifier_score"])
    saved = keras.models.load_model(output_dir / "generator.keras").get_weights()
    with np.load(output_dir / "training_state.npz") as state:
        averaged = [state[f"ema_generator_{index:03d}"] for index in range(len(saved))]
        raw = [state[f"generator_{index:03d}"] for index in range(len(saved))]
    for a, b in zip(saved, averaged, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(saved, raw, strict=True))
