"""The evaluation: Fréchet distance, classifier score, precision/recall, memorisation, the frozen evaluator, cache."""

import hashlib
import json
import shutil
import subprocess

import keras
import numpy as np
import pytest
from conftest import NOTEBOOK, REPO_ROOT, cell_source, code_cells, mnist_path, nbconvert_command, notebook_env, stream_text

FROZEN_EVALUATOR = REPO_ROOT / "evaluator" / "mnist_evaluator.keras"


def test_frechet_distance_of_a_set_with_itself_is_zero(notebook_functions):
    features = np.random.default_rng(0).normal(size=(500, 6))
    assert notebook_functions["frechet_distance"](features, features) == pytest.approx(0, abs=1e-6)


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians(notebook_functions):
    # For diagonal covariances the distance is |m1 - m2|² + Σ (σ1 - σ2)².
    mean_a, mean_b = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    sd_a, sd_b = np.array([1.0, 2.0, 0.5]), np.array([3.0, 1.0, 0.5])
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum((sd_a - sd_b) ** 2)
    distance = notebook_functions["frechet_distance_from_moments"](mean_a, np.diag(sd_a**2), mean_b, np.diag(sd_b**2))
    assert distance == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_matches_the_closed_form_for_correlated_gaussians(notebook_functions):
    # cov_b = R cov_a Rᵀ for a rotation R: (cov_a^½ cov_b cov_a^½)^½ has a trace we can compute by hand.
    cov_a = np.array([[4.0, 0.0], [0.0, 1.0]])
    angle = np.pi / 2  # swaps the axes: cov_b = diag(1, 4), so the trace term is 2 * (2*1 + 1*2) = 8
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    cov_b = rotation @ cov_a @ rotation.T
    expected = 4.0 + (5.0 + 5.0 - 8.0)  # |(2, 0)|² + tr(A) + tr(B) - 2 tr((A^½ B A^½)^½)
    distance = notebook_functions["frechet_distance_from_moments"](np.zeros(2), cov_a, np.array([2.0, 0.0]), cov_b)
    assert distance == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_from_samples_approaches_the_closed_form(notebook_functions):
    rng = np.random.default_rng(1)
    samples_a = rng.normal(0.0, 1.0, size=(20000, 2))
    samples_b = rng.normal(3.0, 2.0, size=(20000, 2))
    expected = 2 * 3.0**2 + 2 * (2.0 - 1.0) ** 2
    assert notebook_functions["frechet_distance"](samples_a, samples_b) == pytest.approx(expected, rel=0.05)


def test_classifier_score_bounds(notebook_functions):
    classifier_score = notebook_functions["classifier_score"]
    confident_and_varied = np.eye(10)[np.arange(1000) % 10] * 50
    assert classifier_score(confident_and_varied) == pytest.approx(10, rel=1e-6)
    one_digit_only = np.tile(np.eye(10)[3] * 50, (1000, 1))
    assert classifier_score(one_digit_only) == pytest.approx(1, rel=1e-6)
    unsure = np.zeros((1000, 10))
    assert classifier_score(unsure) == pytest.approx(1, rel=1e-6)


def test_class_shares_count_predicted_digits(notebook_functions):
    logits = np.eye(10)[[0, 0, 1, 9]]
    assert notebook_functions["class_shares"](logits).tolist() == [0.5, 0.25, 0, 0, 0, 0, 0, 0, 0, 0.25]


def test_precision_and_recall_on_hand_made_points(notebook_functions):
    # Real points: a 10×10 grid with spacing 1, so every k=5 radius is between 1 and 1.5.
    real = np.array([[x, y] for x in range(10) for y in range(10)], dtype="float32")
    # Fakes: half of them sit on real points, half far away (a cluster of their own).
    on_manifold = real[:50] + 0.1
    far_away = np.array([[100 + x, 100 + y] for x in range(10) for y in range(5)], dtype="float32")
    fake = np.concatenate([on_manifold, far_away])
    precision, recall = notebook_functions["precision_recall"](real, fake, k=5)
    assert precision == pytest.approx(0.5)
    # Recall, by hand: the fakes cover the 50 real points with x = 0..4, all 10 with x = 5 (0.91 away, inside
    # radius √2), and from x = 6 only (6, 0) and (6, 9), reached by the two corner fakes whose k = 5 radius is 2.
    assert recall == pytest.approx(0.62)


def test_precision_and_recall_of_identical_sets_are_one(notebook_functions):
    points = np.random.default_rng(2).normal(size=(300, 4))
    assert notebook_functions["precision_recall"](points, points, k=5) == (1.0, 1.0)


def test_nearest_pixel_distances_finds_copies_and_skips_self(notebook_functions):
    rng = np.random.default_rng(3)
    references = rng.integers(0, 256, (20, 28, 28)).astype("uint8")
    queries = references[[4, 7]].copy()
    distances, indices = notebook_functions["nearest_pixel_distances"](queries, references)
    assert indices.tolist() == [4, 7] and np.allclose(distances, 0, atol=1e-3)
    distances, indices = notebook_functions["nearest_pixel_distances"](queries, references, own_indices=np.array([4, 7]))
    assert 4 not in indices and 7 not in indices and (distances > 0.2).all()


@pytest.fixture
def tiny_digits():
    rng = np.random.default_rng(4)
    return rng.uniform(-1, 1, (64, 28, 28, 1)).astype("float32"), rng.integers(0, 10, 64)


def test_evaluator_is_cached_and_reused(notebook_functions, tiny_digits, tmp_path, capsys):
    load_or_train = notebook_functions["load_or_train_evaluator"]
    path = tmp_path / "evaluator.keras"
    trained = load_or_train(path, *tiny_digits, epochs=1)
    assert path.is_file()
    reused = load_or_train(path, *tiny_digits, epochs=1)
    assert "Loaded the cached evaluator" in capsys.readouterr().out
    np.testing.assert_allclose(reused.predict(tiny_digits[0], verbose=0), trained.predict(tiny_digits[0], verbose=0), atol=1e-5)


def test_corrupt_evaluator_cache_is_retrained(notebook_functions, tiny_digits, tmp_path, capsys):
    path = tmp_path / "evaluator.keras"
    path.write_bytes(b"not a keras file")
    evaluator = notebook_functions["load_or_train_evaluator"](path, *tiny_digits, epochs=1)
    assert "could not be loaded" in capsys.readouterr().out
    assert evaluator.output_shape == (None, 10)
    keras.models.load_model(path)  # the corrupt file was replaced by a good one


def test_evaluator_cache_with_another_architecture_is_retrained(notebook_functions, tiny_digits, tmp_path, capsys):
    path = tmp_path / "evaluator.keras"
    other = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    other.save(path)
    evaluator = notebook_functions["load_or_train_evaluator"](path, *tiny_digits, epochs=1)
    assert "does not have the expected architecture" in capsys.readouterr().out
    expected = notebook_functions["make_evaluator"]().get_layer("features").output.shape
    assert evaluator.get_layer("features").output.shape == expected


def test_the_shipped_evaluator_is_small_and_the_one_the_notebook_expects(notebook_functions):
    assert FROZEN_EVALUATOR.stat().st_size < 1.5 * 2**20  # weights only, without the optimiser's state
    assert notebook_functions["sha256_of"](FROZEN_EVALUATOR) == notebook_functions["FROZEN_EVALUATOR_SHA256"]


@pytest.mark.skipif(not mnist_path(), reason="needs the MNIST .npz")
def test_the_frozen_evaluator_reads_the_mnist_test_digits(notebook_functions):
    evaluator = notebook_functions["load_frozen_evaluator"](FROZEN_EVALUATOR, notebook_functions["FROZEN_EVALUATOR_SHA256"])
    with np.load(mnist_path()) as data:
        digits, labels = notebook_functions["scale_digits"](data["x_test"]), data["y_test"]
    logits = evaluator.predict(digits, batch_size=1000, verbose=0)
    assert notebook_functions["label_accuracy"](logits, labels) > 0.99


def test_the_evaluator_measures_in_float32_after_a_16_bit_gan(notebook_functions, tmp_path, monkeypatch):
    """The evaluator cell, run after networks built under bfloat16: the judge and its features stay float32, so scores
    compare across machines with and without 16-bit computation."""
    cell = next(cell for cell in code_cells() if cell_source(cell).startswith("# The evaluator:"))
    namespace = {**notebook_functions, "DATASET": "mnist", "SEED": 0, "output_dir": tmp_path}
    monkeypatch.chdir(REPO_ROOT)  # where the notebook finds evaluator/
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        exec(compile(cell_source(cell), "the evaluator cell", "exec"), namespace)  # noqa: S102 -- our own notebook
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert namespace["evaluator_path"] == FROZEN_EVALUATOR.relative_to(REPO_ROOT)
    features, logits = namespace["evaluator_features"](np.zeros((2, 28, 28, 1), "float32"))
    assert (features.dtype, logits.dtype) == ("float32", "float32")
    assert {layer.compute_dtype for layer in namespace["evaluator_features"].layers} == {"float32"}


def test_a_changed_frozen_evaluator_is_refused(notebook_functions, tmp_path):
    changed = bytearray(FROZEN_EVALUATOR.read_bytes())
    changed[len(changed) // 2] ^= 1  # one bit of one weight
    (tmp_path / "mnist_evaluator.keras").write_bytes(changed)
    with pytest.raises(ValueError, match=r"SHA-256 .*\(git checkout evaluator/\)"):
        notebook_functions["load_frozen_evaluator"](tmp_path / "mnist_evaluator.keras", notebook_functions["FROZEN_EVALUATOR_SHA256"])


def test_a_notebook_downloaded_alone_trains_its_own_evaluator(tmp_path):
    shutil.copy(NOTEBOOK, tmp_path / "mnist_gan.ipynb")  # no evaluator/ folder beside it
    output_dir = tmp_path / "outputs"
    env = notebook_env(output_dir, MNIST_GAN_EPOCHS="1", MNIST_GAN_TRAIN_SIZE="256", MNIST_GAN_EVALUATOR_EPOCHS="1",
                       MNIST_GAN_EVAL_SAMPLES="1000", MNIST_GAN_EXPORT_COUNT="0")
    command = nbconvert_command(tmp_path, notebook=tmp_path / "mnist_gan.ipynb")
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    text = stream_text(tmp_path / "run.ipynb")
    assert "No evaluator/mnist_evaluator.keras beside the notebook" in text and "Trained an evaluator for 1 epochs" in text
    scores = json.loads((output_dir / "scores.json").read_text())
    trained = output_dir / "evaluator_mnist.keras"  # named by dataset: never reused for another
    assert scores["evaluator_sha256"] == hashlib.sha256(trained.read_bytes()).hexdigest()
    assert scores["evaluator_accuracy"] > 0.95
