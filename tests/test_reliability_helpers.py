"""Unit tests for the notebook's reliability helpers: atomic writes, folder checks, the guard and the state file."""

import math
from collections import namedtuple

import keras
import numpy as np
import pytest
from conftest import tiny_gan


def test_write_atomically_replaces_the_file_in_one_step(notebook_functions, tmp_path):
    path = tmp_path / "scores.json"
    path.write_text("old")
    notebook_functions["write_atomically"](path, lambda temporary_path: temporary_path.write_text("new"))
    assert path.read_text() == "new"
    assert sorted(tmp_path.iterdir()) == [path]


def test_write_atomically_keeps_the_old_file_when_the_write_fails(notebook_functions, tmp_path):
    path = tmp_path / "generator.keras"
    path.write_text("previous good file")

    def fail_half_way(temporary_path):
        temporary_path.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        notebook_functions["write_atomically"](path, fail_half_way)
    assert path.read_text() == "previous good file"
    assert sorted(tmp_path.iterdir()) == [path]  # no temporary file left behind


@pytest.mark.parametrize("value", ["yes", "True", "1", "no", "false", "0"])
def test_resolve_parameter_reads_booleans(notebook_functions, monkeypatch, value):
    monkeypatch.setenv("MNIST_GAN_FRESH", value)
    resolved = notebook_functions["resolve_parameter"]("FRESH", False, bool, lambda v: True, "True or False")
    assert resolved is (value.lower() in ("yes", "true", "1"))


def test_prepare_output_dir_creates_the_folders(notebook_functions, tmp_path):
    notebook_functions["prepare_output_dir"](tmp_path / "new" / "outputs")
    assert (tmp_path / "new" / "outputs" / "grids").is_dir()
    assert (tmp_path / "new" / "outputs" / "checkpoints").is_dir()
    assert not (tmp_path / "new" / "outputs" / ".write-test").exists()


def test_prepare_output_dir_refuses_a_full_disk(notebook_functions, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(notebook_functions["shutil"], "disk_usage", lambda path: usage(2**30, 2**30 - 5 * 2**20, 5 * 2**20))
    with pytest.raises(ValueError, match=r"on a disk with only 5 MiB free; a run needs about 200 MiB. Free some space"):
        notebook_functions["prepare_output_dir"](tmp_path / "outputs")


def test_divergence_guard_raises_at_the_first_non_finite_loss(notebook_functions):
    guard = notebook_functions["DivergenceGuard"]()
    guard.on_epoch_begin(3)
    guard.on_train_batch_end(0, {"d_loss": 1.2, "g_loss": 0.8})
    with pytest.raises(notebook_functions["TrainingDiverged"]) as raised:
        guard.on_train_batch_end(1, {"d_loss": math.nan, "g_loss": 0.8})
    assert raised.value.args[0] == 4


def test_divergence_guard_flags_a_discriminator_that_keeps_winning(notebook_functions, capsys):
    guard = notebook_functions["DivergenceGuard"](patience=3)
    winning = {"D(x)": 0.99, "D(G(z))": 0.01}
    for epoch, logs in enumerate([winning, winning, {"D(x)": 0.6, "D(G(z))": 0.4}, winning, winning]):
        guard.on_epoch_end(epoch, logs)
    assert capsys.readouterr().out == ""  # never three epochs in a row
    guard.on_epoch_end(5, winning)
    assert "the discriminator has won outright for 3 epochs in a row" in capsys.readouterr().out


SETTINGS = {"ARCHITECTURE": "default", "LATENT_DIM": 8, "FILTERS": 4, "SEED": 1}


def small_gan(functions, seed):
    """A tiny compiled GAN whose optimisers have taken one step, so every part of the state is non-trivial."""
    gan = tiny_gan(functions, seed, ema=0.9, dropout=0.3)
    gan.train_step(keras.random.uniform((4, 28, 28, 1), -1, 1, seed=seed))
    return gan


def test_training_state_round_trip(notebook_functions, tmp_path):
    path = tmp_path / "training_state.npz"
    saved, restored = small_gan(notebook_functions, 1), small_gan(notebook_functions, 2)
    rows = [{"epoch": 1, "d_loss": 1.3, "fd": math.nan}]
    noise = np.ones((64, 8), "float32")
    notebook_functions["save_training_state"](path, saved, 1, rows, noise, SETTINGS, 12.5, 1e-3)

    epoch, history, fixed_noise, seconds, saved_rate = notebook_functions["restore_training_state"](path, restored, SETTINGS, 5e-4)
    assert (epoch, seconds) == (1, 12.5)
    assert saved_rate == pytest.approx(1e-3)  # what the saved run trained with
    assert history[0]["d_loss"] == 1.3 and math.isnan(history[0]["fd"])
    np.testing.assert_array_equal(fixed_noise, noise)
    for part in ("generator", "discriminator", "ema_generator"):
        for a, b in zip(getattr(saved, part).get_weights(), getattr(restored, part).get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(saved.g_optimizer.variables[2:], restored.g_optimizer.variables[2:], strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # Adam's moments
    assert int(restored.d_optimizer.iterations) == 1
    assert float(restored.g_optimizer.learning_rate) == pytest.approx(5e-4)  # the new rate, not the saved one
    np.testing.assert_array_equal(np.asarray(saved.noise_seed.state), np.asarray(restored.noise_seed.state))


def test_training_state_with_other_settings_is_refused(notebook_functions, tmp_path):
    path = tmp_path / "training_state.npz"
    gan = small_gan(notebook_functions, 1)
    notebook_functions["save_training_state"](path, gan, 1, [], np.zeros((64, 8), "float32"), SETTINGS, 1.0, 1e-3)
    with pytest.raises(ValueError, match=r"other settings \(FILTERS 4 → 8\).*set FRESH=True"):
        notebook_functions["restore_training_state"](path, gan, {**SETTINGS, "FILTERS": 8}, 1e-3)


def test_training_state_saved_before_dataset_was_a_knob_resumes_as_mnist(notebook_functions, tmp_path):
    path, gan = tmp_path / "training_state.npz", small_gan(notebook_functions, 1)
    notebook_functions["save_training_state"](path, gan, 1, [], np.zeros((64, 8), "float32"), SETTINGS, 1.0, 1e-3)
    assert "DATASET" not in SETTINGS
    assert notebook_functions["restore_training_state"](path, gan, {**SETTINGS, "DATASET": "mnist"}, 1e-3)[0] == 1
    with pytest.raises(ValueError, match=r"other settings \(DATASET 'mnist' → 'fashion_mnist'\)"):
        notebook_functions["restore_training_state"](path, gan, {**SETTINGS, "DATASET": "fashion_mnist"}, 1e-3)


def gan_with_generator(functions, make_layer):
    """A tiny GAN whose generator is the notebook's with each layer rebuilt by make_layer(layer)."""
    gan = small_gan(functions, 2)
    generator = keras.models.clone_model(gan.generator, clone_function=make_layer)
    return functions["GAN"](generator, gan.discriminator, latent_dim=8, seed=2)


def test_a_state_is_never_loaded_into_a_changed_network(notebook_functions, tmp_path):
    path = tmp_path / "training_state.npz"
    notebook_functions["save_training_state"](path, small_gan(notebook_functions, 1), 1, [], np.zeros((64, 8), "float32"), SETTINGS, 1.0, 1e-3)

    def leaky(layer):  # ReLU → LeakyReLU: the same weight shapes, another network
        return keras.layers.LeakyReLU() if isinstance(layer, keras.layers.ReLU) else layer.__class__.from_config(layer.get_config())

    def wider(layer):  # a wider transposed convolution: other weight shapes
        config = layer.get_config()
        if isinstance(layer, keras.layers.Conv2DTranspose) and config["filters"] > 1:
            config["filters"] *= 2
        return layer.__class__.from_config(config)

    for make_layer, was, now in ((leaky, r"re_lu \(ReLU, output \(None, 392\)", r"leaky_re_lu \(LeakyReLU, output \(None, 392\)"),
                                 (wider, r"conv2d_transpose \(Conv2DTranspose, output \(None, 14, 14, 4\)",
                                  r"conv2d_transpose \(Conv2DTranspose, output \(None, 14, 14, 8\)")):
        changed = gan_with_generator(notebook_functions, make_layer)
        changed.compile(d_optimizer=keras.optimizers.Adam(1e-3), g_optimizer=keras.optimizers.Adam(1e-3))
        before = [weight.copy() for weight in changed.generator.get_weights()]
        with pytest.raises(ValueError, match=rf"generator has changed since: its layer \d+ was {was}.*is now {now}.*FRESH=True"):
            notebook_functions["restore_training_state"](path, changed, SETTINGS, 1e-3)
        for weight, kept in zip(changed.generator.get_weights(), before, strict=True):
            np.testing.assert_array_equal(weight, kept)  # refused before anything was loaded


def test_layer_records_ignore_keras_name_counters(notebook_functions):
    keras.utils.set_random_seed(0)
    first, second = (notebook_functions["make_generator"](8, 4) for _ in range(2))  # "dense" and "dense_1"
    assert first.layers[0].name != second.layers[0].name
    records = notebook_functions["layer_records"](first)
    assert records == notebook_functions["layer_records"](second)
    assert records[0] == "dense (Dense, output (None, 392), weights [(8, 392)])"


def test_unreadable_training_state_says_how_to_start_over(notebook_functions, tmp_path):
    path = tmp_path / "training_state.npz"
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"training_state.npz in OUTPUT_DIR could not be read .* Set FRESH=True"):
        notebook_functions["read_training_state"](path)


def train_tiny_gan_with(notebook_functions, time_limit, epochs):
    """Fit a tiny GAN for `epochs` epochs of 5 one-step calls with `time_limit` among its callbacks; return it."""
    gan = tiny_gan(notebook_functions)
    images = np.random.default_rng(0).uniform(-1, 1, (20, 28, 28, 1)).astype("float32")
    gan.fit(images, batch_size=4, epochs=epochs, callbacks=[time_limit], verbose=0)
    return gan


def test_time_limit_stops_after_the_first_call_past_it_and_says_so(notebook_functions, capsys):
    time_limit = notebook_functions["TimeLimit"](1e-9)  # over as soon as the first step has run
    gan = train_tiny_gan_with(notebook_functions, time_limit, epochs=3)
    assert int(gan.g_optimizer.iterations) == 1
    assert time_limit.stopped_in_epoch == 1
    assert "TIME_LIMIT_MINUTES=1e-09 reached: training stopped in epoch 1 of 3." in capsys.readouterr().out


def test_time_limit_of_zero_never_stops(notebook_functions, capsys):
    time_limit = notebook_functions["TimeLimit"](0.0)
    gan = train_tiny_gan_with(notebook_functions, time_limit, epochs=2)
    assert int(gan.g_optimizer.iterations) == 2 * 5
    assert time_limit.stopped_in_epoch is None
    assert "TIME_LIMIT_MINUTES" not in capsys.readouterr().out
