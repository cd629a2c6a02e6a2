"""A reduced headless run (`jupyter nbconvert --execute`) leaves every promised file, readable and right."""

import base64
import csv
import io
import json
import math

import keras
import numpy as np
import pytest
from conftest import REDUCED_RUN, code_cells, default_parameter, read_history, stream_text, tensorboard_events
from PIL import Image

EPOCHS = int(REDUCED_RUN["MNIST_GAN_EPOCHS"])
LATENT_DIM = int(REDUCED_RUN["MNIST_GAN_LATENT_DIM"])
GRID_PIXELS = 8 * 28  # an 8×8 grid of 28-pixel digits


def test_one_grid_per_epoch_of_8x8_digits(reduced_run):
    output_dir, _ = reduced_run
    grids = sorted(path.name for path in (output_dir / "grids").glob("*.png"))
    assert grids == [f"epoch_{epoch:03d}.png" for epoch in range(1, EPOCHS + 1)]
    for name in grids:
        with Image.open(output_dir / "grids" / name) as grid:
            assert grid.mode == "L"
            assert grid.size == (GRID_PIXELS, GRID_PIXELS)
            pixels = np.asarray(grid)
        assert pixels.std() > 0, f"{name} is blank"


def test_history_has_one_row_of_finite_metrics_per_epoch(reduced_run):
    output_dir, _ = reduced_run
    with open(output_dir / "history.csv", newline="") as history_file:
        rows = list(csv.DictReader(history_file))
    assert [int(row["epoch"]) for row in rows] == list(range(1, EPOCHS + 1))
    for row in rows:
        for column in ("d_loss", "g_loss", "D(x)", "D(G(z))"):
            assert math.isfinite(float(row[column])), (column, row)
        assert 0 <= float(row["D(x)"]) <= 1 and 0 <= float(row["D(G(z))"]) <= 1


def test_saved_generator_maps_noise_to_digits(reduced_run):
    output_dir, _ = reduced_run
    generator = keras.models.load_model(output_dir / "generator.keras")
    noise = np.random.default_rng(0).standard_normal((5, LATENT_DIM)).astype("float32")
    images = np.asarray(generator.predict(noise, verbose=0))
    assert images.shape == (5, 28, 28, 1)
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert images.std() > 0


def test_saved_discriminator_scores_images(reduced_run):
    output_dir, _ = reduced_run
    discriminator = keras.models.load_model(output_dir / "discriminator.keras")
    # With clusters (on by default) it judges each image together with its cluster, 0 to CLUSTERS - 1.
    assert discriminator.input_shape == [(None, 28, 28, 1), (None,)]
    assert [tensor.name for tensor in discriminator.inputs] == ["images", "clusters"]
    last_cluster = discriminator.get_layer("projection").input_dim - 1
    assert last_cluster + 1 == default_parameter("CLUSTERS")
    images = np.zeros((3, 28, 28, 1), "float32")
    logits = np.asarray(discriminator.predict([images, np.array([0, 7, last_cluster], "int32")], verbose=0))
    assert logits.shape == (3, 1)
    assert np.isfinite(logits).all()
    assert not np.allclose(logits[0], logits[1:]), "the cluster must change the verdict on the same image"


def test_generator_checkpoints_every_epoch_load(reduced_run):
    output_dir, _ = reduced_run
    checkpoints = sorted(path.name for path in (output_dir / "checkpoints").glob("*.keras"))
    assert checkpoints == [f"generator_epoch_{epoch:03d}.keras" for epoch in range(1, EPOCHS + 1)]
    generator = keras.models.load_model(output_dir / "checkpoints" / checkpoints[-1])
    assert generator.input_shape == (None, LATENT_DIM)


def test_progress_gif_has_one_frame_per_epoch_headed_by_its_number(reduced_run):
    output_dir, _ = reduced_run
    with Image.open(output_dir / "progress.gif") as gif:
        assert gif.n_frames == EPOCHS
        width, height = gif.size
        assert width == GRID_PIXELS and GRID_PIXELS < height < GRID_PIXELS + 28  # a strip for the epoch above the grid
        headers = []
        for frame in range(EPOCHS):
            gif.seek(frame)
            pixels = np.asarray(gif.convert("L"))
            headers.append(pixels[: height - GRID_PIXELS])
            grid = np.asarray(Image.open(output_dir / "grids" / f"epoch_{frame + 1:03d}.png"))
            np.testing.assert_array_equal(pixels[height - GRID_PIXELS :], grid)
    assert all(header.max() > 0 for header in headers), "every frame carries its epoch number"
    assert not np.array_equal(headers[0], headers[-1]), "the numbers differ from frame to frame"


def test_executed_notebook_shows_each_epochs_digits_as_a_band_and_no_errors(reduced_run):
    output_dir, executed = reduced_run
    cells = code_cells(executed)
    outputs = [output for cell in cells for output in cell["outputs"]]
    assert not [output for output in outputs if output["output_type"] == "error"]
    training_cell = next(cell for cell in cells if "gan.fit(" in "".join(cell["source"]))
    bands = [output["data"]["image/png"] for output in training_cell["outputs"] if "image/png" in output.get("data", {})]
    assert len(bands) == EPOCHS
    for epoch, band in enumerate(bands, 1):
        shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(band))))
        assert shown.shape == (2 * 28, 32 * 28)  # the 64 digits of the 8×8 grid in two rows of 32
        grid = np.asarray(Image.open(output_dir / "grids" / f"epoch_{epoch:03d}.png"))
        digits = grid.reshape(8, 28, 8, 28).transpose(0, 2, 1, 3).reshape(64, 28, 28)
        np.testing.assert_array_equal(shown, digits.reshape(2, 32, 28, 28).transpose(0, 2, 1, 3).reshape(56, -1))
    counts = [cell["execution_count"] for cell in cells]
    assert counts == list(range(1, len(cells) + 1))


def test_the_run_says_which_knobs_came_from_the_environment(reduced_run):
    _, executed = reduced_run
    check_cell = next(cell for cell in code_cells(executed) if "".join(cell["source"]).startswith("# Check the parameters"))
    printed = "".join("".join(output.get("text", "")) for output in check_cell["outputs"])
    overrides = printed.split("Set by MNIST_GAN_* variables: ")[1]
    for variable, value in REDUCED_RUN.items():
        assert f"{variable.removeprefix('MNIST_GAN_')}={int(value)!r}" in overrides
    assert "LEARNING_RATE=" not in overrides  # left at its default


def test_parameters_cell_is_tagged_for_papermill():
    tagged = [cell for cell in code_cells() if "parameters" in cell.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    source = "".join(tagged[0]["source"])
    for knob in ("EPOCHS", "BATCH_SIZE", "LATENT_DIM", "LEARNING_RATE", "BETA_1", "SEED", "TRAIN_SIZE",
                 "DATA_PATH", "OUTPUT_DIR", "CHECKPOINT_EVERY"):
        assert f"\n{knob} = " in "\n" + source, knob


SCORE_KEYS = ("fd", "classifier_score", "class_min", "class_max", "precision", "recall", "memorised", "evaluator_accuracy")


def test_scores_json_has_every_score_and_its_reference(reduced_run, notebook_functions):
    output_dir, _ = reduced_run
    scores = json.loads((output_dir / "scores.json").read_text())
    for key in (*SCORE_KEYS, "train_seconds", "images_per_second"):
        assert math.isfinite(scores[key]), key
    for key in SCORE_KEYS:
        assert math.isfinite(scores["reference"][key]), key
    assert scores["samples"] == int(REDUCED_RUN["MNIST_GAN_EVAL_SAMPLES"])
    assert scores["images_per_second"] > 0 and scores["train_seconds"] > 0
    assert scores["evaluator_sha256"] == notebook_functions["FROZEN_EVALUATOR_SHA256"]  # scored by the frozen evaluator
    assert not list(output_dir.glob("evaluator*.keras"))  # none trained


def test_scores_are_sane(reduced_run):
    output_dir, _ = reduced_run
    scores = json.loads((output_dir / "scores.json").read_text())
    reference = scores["reference"]
    # Real digits against real digits are far closer than an untrained generator's noise.
    assert reference["fd"] < scores["untrained_fd"] / 20
    assert reference["classifier_score"] > 9
    assert 0.05 < reference["class_min"] <= 0.1 <= reference["class_max"] < 0.15
    assert reference["precision"] > 0.8 and reference["recall"] > 0.8
    assert scores["evaluator_accuracy"] > 0.99  # the frozen evaluator, on the 10,000 test digits
    for key in ("class_min", "class_max", "precision", "recall", "memorised"):
        assert 0 <= scores[key] <= 1, key


def test_history_records_periodic_scores_and_epoch_times(reduced_run):
    output_dir, _ = reduced_run
    kept = sorted(path.name for path in (output_dir / "periodic").glob("*.keras"))
    assert kept == [f"generator_epoch_{epoch:03d}.keras" for epoch in range(1, EPOCHS + 1)]  # EVAL_EVERY defaults to 1
    generator = keras.models.load_model(output_dir / "periodic" / kept[0])
    assert generator.predict(np.zeros((2, 16), "float32"), verbose=0).shape == (2, 28, 28, 1)
    with open(output_dir / "history.csv", newline="") as history_file:
        rows = list(csv.DictReader(history_file))
    for row in rows:  # EVAL_EVERY defaults to 1: every epoch is scored
        assert float(row["fd"]) > 0 and 1 <= float(row["classifier_score"]) <= 10
        assert float(row["epoch_seconds"]) > 0


def test_the_generator_of_the_lowest_per_epoch_fd_is_kept_and_scored(reduced_run):
    output_dir, notebook_path = reduced_run
    history = read_history(output_dir)
    best_epoch = int(min(history, key=lambda row: row["fd"])["epoch"])
    best = keras.models.load_model(output_dir / "generator_best.keras")
    kept = keras.models.load_model(output_dir / "periodic" / f"generator_epoch_{best_epoch:03d}.keras")
    for weight, kept_weight in zip(best.get_weights(), kept.get_weights(), strict=True):
        np.testing.assert_array_equal(weight, kept_weight)
    scores = json.loads((output_dir / "scores.json").read_text())
    assert scores["best_generator"]["epoch"] == best_epoch
    assert math.isfinite(scores["best_generator"]["fd"]) and 1 <= scores["best_generator"]["classifier_score"] <= 10
    text = stream_text(notebook_path)
    assert f"The best per-epoch FD came after epoch {best_epoch}; that generator, generator_best.keras, scores FD" in text


def test_the_learning_rate_falls_over_the_second_half_of_training(reduced_run, notebook_functions):
    output_dir, _ = reduced_run
    logged_rates = dict(tensorboard_events(output_dir / "logs" / "train")["epoch_learning_rate"])
    rate, share = default_parameter("LEARNING_RATE"), default_parameter("FINAL_RATE_SHARE")
    # 16 steps an epoch in calls of 8, 32 in all: an epoch logs the rate its last call began with.
    assert logged_rates[1] == pytest.approx(rate)  # step 8 of 32, in the first half
    assert logged_rates[2] == pytest.approx(notebook_functions["decayed_rate"](rate, share, 24 / 32))
    assert logged_rates[2] == pytest.approx(rate * (1 - (1 - share) / 2)) and share < 1  # half-way down
