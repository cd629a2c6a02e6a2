"""Bad parameters and bad data stop the notebook early with one clear message, not a deep traceback."""

import numpy as np
import pytest
from conftest import run_until_error as run_notebook_until_error


def run_until_error(tmp_path, **overrides):
    """Execute the notebook writing to tmp_path/outputs; return the CellExecutionError it stops with."""
    return run_notebook_until_error(tmp_path / "outputs", **overrides)


def write_npz(path, **arrays):
    """Save arrays as an .npz and return its path as a string."""
    np.savez(path, **arrays)
    return str(path)


def mnist_like(train=32, test=8, image_shape=(28, 28), dtype="uint8", labels=None):
    """Small random arrays in Keras' MNIST layout, with optional faults."""
    rng = np.random.default_rng(0)
    y_train = rng.integers(0, 10, train) if labels is None else labels
    return {
        "x_train": rng.integers(0, 256, (train, *image_shape)).astype(dtype),
        "y_train": y_train,
        "x_test": rng.integers(0, 256, (test, *image_shape)).astype(dtype),
        "y_test": rng.integers(0, 10, test),
    }


def test_missing_data_path(tmp_path):
    error = run_until_error(tmp_path, MNIST_GAN_DATA_PATH=str(tmp_path / "nowhere.npz"))
    assert error.ename == "ValueError"
    assert "nowhere.npz' does not exist" in error.evalue
    assert "MNIST_GAN_DATA_PATH" in error.evalue


def test_corrupt_npz(tmp_path):
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 this is not really a zip archive" * 10)
    error = run_until_error(tmp_path, MNIST_GAN_DATA_PATH=str(corrupt))
    assert error.ename == "ValueError"
    assert "'corrupt.npz' could not be read as an .npz file" in error.evalue
    assert "zipfile.py" not in error.traceback and "site-packages/numpy" not in error.traceback


def test_npz_with_wrong_image_shape(tmp_path):
    path = write_npz(tmp_path / "wrong_shape.npz", **mnist_like(image_shape=(32, 32)))
    error = run_until_error(tmp_path, MNIST_GAN_DATA_PATH=path)
    assert error.ename == "ValueError"
    assert "x_train must be (N, 28, 28) uint8; found x_train (32, 32, 32) uint8" in error.evalue


def test_npz_with_float_images(tmp_path):
    path = write_npz(tmp_path / "float_images.npz", **mnist_like(dtype="float32"))
    error = run_until_error(tmp_path, MNIST_GAN_DATA_PATH=path)
    assert error.ename == "ValueError"
    assert "x_train must be (N, 28, 28) uint8; found x_train (32, 28, 28) float32" in error.evalue


def test_output_dir_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    error = run_notebook_until_error(blocker / "outputs")
    assert error.ename == "ValueError"
    assert "is not a folder this notebook can write to" in error.evalue
    assert "Set OUTPUT_DIR (or MNIST_GAN_OUTPUT_DIR) to one that is." in error.evalue


def test_npz_with_missing_arrays(tmp_path):
    path = write_npz(tmp_path / "images_only.npz", x_train=np.zeros((4, 28, 28), "uint8"))
    error = run_until_error(tmp_path, MNIST_GAN_DATA_PATH=path)
    assert "lacks ['y_train', 'x_test', 'y_test']" in error.evalue


def test_npz_with_labels_outside_0_to_9(tmp_path):
    path = write_npz(tmp_path / "bad_labels.npz", **mnist_like(labels=np.full(32, 12)))
    error = run_until_error(tmp_path, MNIST_GAN_DATA_PATH=path)
    assert "y_train must hold labels 0 to 9; found 12 to 12" in error.evalue


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("MNIST_GAN_EPOCHS", "0", "from 1 to 1000"),
        ("MNIST_GAN_BATCH_SIZE", "abc", "an integer"),
        ("MNIST_GAN_LEARNING_RATE", "-0.001", "above 0"),
        ("MNIST_GAN_LEARNING_RATE", "inf", "finite"),
        ("MNIST_GAN_FRESH", "maybe", "True or False"),
        ("MNIST_GAN_EMA", "1", "below 1"),
        ("MNIST_GAN_LOSS", "wasserstein", "'wgan-gp'"),
        ("MNIST_GAN_EXPORT_FORMAT", "jpg", "'npz'"),
        ("MNIST_GAN_CONDITIONAL", "sometimes", "True or False"),
        ("MNIST_GAN_CLUSTERS", "1", "0 (off) or"),
        ("MNIST_GAN_TIME_LIMIT_MINUTES", "nan", "minutes"),
        ("MNIST_GAN_OUTPUT_DIR", " ", "not empty"),
        ("MNIST_GAN_DATASET", "cifar10", "one of 'mnist', 'fashion_mnist'; got 'cifar10'"),
    ],
)
def test_bad_parameter(tmp_path, variable, value, allowed):
    error = run_until_error(tmp_path, **{variable: value})
    knob = variable.removeprefix("MNIST_GAN_")
    assert error.ename == "ValueError"
    assert f"{knob} (from {variable}) must be" in error.evalue and allowed in error.evalue
    assert not (tmp_path / "outputs").exists(), "a bad knob must stop the run before it writes anything"


def test_latent_dim_too_short_to_pick_a_cluster(tmp_path):
    error = run_until_error(tmp_path, MNIST_GAN_LATENT_DIM="1", MNIST_GAN_CLUSTERS="20")
    assert error.ename == "ValueError"
    assert "LATENT_DIM must be at least 2 with CLUSTERS=20" in error.evalue and "picks the cluster" in error.evalue
    assert not (tmp_path / "outputs").exists()


def test_batch_that_two_devices_cannot_share(tmp_path):
    error = run_until_error(tmp_path, MNIST_GAN_TEST_CPU_REPLICAS="2", MNIST_GAN_BATCH_SIZE="63")
    assert error.ename == "ValueError"
    assert "BATCH_SIZE must be a multiple of the 2 devices" in error.evalue and "got 63" in error.evalue


def test_critic_batches_that_do_not_fit_the_training_set(tmp_path):
    error = run_until_error(tmp_path, MNIST_GAN_LOSS="wgan-gp", MNIST_GAN_CRITIC_STEPS="5", MNIST_GAN_BATCH_SIZE="64")
    assert error.ename == "ValueError"
    assert "BATCH_SIZE × CRITIC_STEPS must be at most the 256 training images" in error.evalue and "64 × 5" in error.evalue


def test_more_clusters_than_training_images(tmp_path):
    error = run_until_error(tmp_path, MNIST_GAN_CLUSTERS="300")
    assert error.ename == "ValueError"
    assert "CLUSTERS must be at most the 256 training images" in error.evalue and "got 300" in error.evalue
