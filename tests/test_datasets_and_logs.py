"""Other 28×28 datasets (DATASET, DATA_PATH) and the TensorBoard logs under OUTPUT_DIR/logs."""

import json

import keras
import nbformat
import numpy as np
import pytest
from conftest import NOTEBOOK, REPO_ROOT, notebook_env, read_history, stream_text, tensorboard_events
from nbclient import NotebookClient
from PIL import Image

LOSS_CURVES = ("d_loss", "g_loss", "D(x)", "D(G(z))")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def synthetic_set(train_per_class=60, test_per_class=20, seed=0):
    """A small dataset in Keras' layout that no one could mistake for MNIST: ten classes of bright bars on noise,
    horizontal at five heights (labels 0 to 4) or vertical at five places (5 to 9), shifted by a pixel at random."""
    rng = np.random.default_rng(seed)

    def images(per_class):
        pixels = rng.integers(0, 40, (10 * per_class, 28, 28)).astype("uint8")
        labels = np.repeat(np.arange(10, dtype="uint8"), per_class)
        for image, label in zip(pixels, labels, strict=True):
            start = 3 + 5 * (label % 5) + rng.integers(-1, 2)
            if label < 5:
                image[start : start + 3, 4:24] = 255
            else:
                image[4:24, start : start + 3] = 255
        return pixels, labels

    (x_train, y_train), (x_test, y_test) = images(train_per_class), images(test_per_class)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def run_with_probe(output_dir, probe, **overrides):
    """Execute the notebook with one more cell, `probe`, at the end; return what the probe printed."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(probe))
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO_ROOT)}})
    client.execute(env=notebook_env(output_dir, **overrides))
    nbformat.write(notebook, output_dir.parent / "run.ipynb")
    return "".join(output.get("text", "") for output in notebook.cells[-1].outputs)


@pytest.fixture(scope="module")
def synthetic_path(tmp_path_factory):
    """The synthetic set as an .npz file."""
    path = tmp_path_factory.mktemp("data") / "synthetic.npz"
    np.savez(path, **synthetic_set())
    return path


@pytest.fixture(scope="module")
def fashion_conditional_run(tmp_path_factory, synthetic_path):
    """A conditional run on the synthetic set read as DATASET="fashion_mnist": (output_dir, what the probe saw)."""
    output_dir = tmp_path_factory.mktemp("fashion") / "outputs"
    probe = 'print(json.dumps({"row_names": list(fixed_row_names), "evaluator_classes": evaluator.output.shape[-1]}))'
    printed = run_with_probe(output_dir, probe, MNIST_GAN_DATASET="fashion_mnist", MNIST_GAN_DATA_PATH=str(synthetic_path),
                             MNIST_GAN_CONDITIONAL="True", MNIST_GAN_EPOCHS="2", MNIST_GAN_EVALUATOR_EPOCHS="2")
    return output_dir, json.loads(printed)


def test_a_dataset_from_data_path_trains_conditionally_with_its_class_names(fashion_conditional_run):
    output_dir, probe = fashion_conditional_run
    text = stream_text(output_dir.parent / "run.ipynb")
    assert "Fashion-MNIST from synthetic.npz (DATA_PATH): x_train (600, 28, 28), y_train (600,), x_test (200, 28, 28)" in text
    assert probe["row_names"] == FASHION_CLASSES  # the conditional grid names its ten rows
    for epoch in (1, 2):
        assert np.asarray(Image.open(output_dir / "grids" / f"epoch_{epoch:03d}.png")).shape == (280, 224)  # 10 rows × 8
    scores = json.loads((output_dir / "scores.json").read_text())
    assert probe["evaluator_classes"] == 10 and scores["evaluator_accuracy"] >= 0.95  # it learned these ten classes
    assert scores["samples"] == 200 and "label_accuracy" in scores  # as many samples as the set has test images
    generator = keras.models.load_model(output_dir / "generator.keras")
    images = generator.predict([np.zeros((3, 64), "float32"), np.array([0, 4, 9])], verbose=0)
    assert images.shape == (3, 28, 28, 1)


def test_a_dataset_from_data_path_is_clustered(tmp_path, synthetic_path):
    output_dir = tmp_path / "outputs"
    printed = run_with_probe(output_dir, "print(label_purity(train_clusters, training_digit_labels))",
                             MNIST_GAN_DATA_PATH=str(synthetic_path), MNIST_GAN_CLUSTERS="20", MNIST_GAN_EPOCHS="1",
                             MNIST_GAN_EVALUATOR_EPOCHS="1", MNIST_GAN_EXPORT_COUNT="0")
    assert float(printed) == 1.0  # the bars are easy: each of the 20 clusters holds one class
    assert "20 clusters of" in stream_text(tmp_path / "run.ipynb")
    generator = keras.models.load_model(output_dir / "generator.keras")
    assert generator.predict(np.zeros((2, 64), "float32"), verbose=0).shape == (2, 28, 28, 1)


def test_show_pixels_names_each_row_beside_its_middle(notebook_functions, monkeypatch):
    shown = []
    monkeypatch.setitem(notebook_functions, "display", shown.append)
    notebook_functions["show_pixels"](np.zeros((3 * 28, 2 * 28), "uint8"), "three rows", row_names=("a", "b", "c"))
    (figure,) = shown
    texts = figure.axes[0].texts
    assert [text.get_text() for text in texts] == ["a", "b", "c"]
    assert [text.get_position()[1] for text in texts] == [14, 42, 70]  # the middle of each 28-pixel row


def test_fashion_mnist_without_a_download_names_dataset_and_data_path(notebook_functions, monkeypatch):
    def no_network():
        raise Exception("URL fetch failure")  # what Keras raises without a network

    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", no_network)
    with pytest.raises(ValueError, match=r"^DATASET='fashion_mnist': Keras could not download it \(URL fetch failure\)") as raised:
        notebook_functions["load_dataset"]("fashion_mnist", "")
    assert "DATA_PATH" in str(raised.value)


def test_tensorboard_logs_each_epochs_curves_grid_and_scores(reduced_run):
    output_dir, _ = reduced_run
    history = read_history(output_dir)
    epochs = [int(row["epoch"]) for row in history]
    training = tensorboard_events(output_dir / "logs" / "train")
    for name in LOSS_CURVES:  # Keras' names: "epoch_" and the metric's
        assert [step for step, _ in training[f"epoch_{name}"]] == epochs
        np.testing.assert_allclose([value for _, value in training[f"epoch_{name}"]], [row[name] for row in history], rtol=1e-6)
    assert [step for step, _ in training["fixed_noise_grid"]] == epochs  # one image per epoch
    for step, image in training["fixed_noise_grid"]:
        np.testing.assert_array_equal(image[..., 0], np.asarray(Image.open(output_dir / "grids" / f"epoch_{step:03d}.png")))
    scores = tensorboard_events(output_dir / "logs" / "scores")
    for name in ("fd", "classifier_score"):
        assert [step for step, _ in scores[f"epoch_{name}"]] == epochs
        np.testing.assert_allclose([value for _, value in scores[f"epoch_{name}"]], [row[name] for row in history], rtol=1e-6)
