"""A reduced headless run (`jupyter nbconvert --execute`) leaves every promised file, readable and right."""

import csv
import math

import keras
import numpy as np
from conftest import REDUCED_RUN, code_cells
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
    assert [int(row["epoch"]) for row in rows] == list(range(EPOCHS))
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
    logits = np.asarray(discriminator.predict(np.zeros((3, 28, 28, 1), "float32"), verbose=0))
    assert logits.shape == (3, 1)
    assert np.isfinite(logits).all()


def test_generator_checkpoints_every_epoch_load(reduced_run):
    output_dir, _ = reduced_run
    checkpoints = sorted(path.name for path in (output_dir / "checkpoints").glob("*.keras"))
    assert checkpoints == [f"generator_epoch_{epoch:03d}.keras" for epoch in range(1, EPOCHS + 1)]
    generator = keras.models.load_model(output_dir / "checkpoints" / checkpoints[-1])
    assert generator.input_shape == (None, LATENT_DIM)


def test_progress_gif_has_one_frame_per_epoch(reduced_run):
    output_dir, _ = reduced_run
    with Image.open(output_dir / "progress.gif") as gif:
        assert gif.n_frames == EPOCHS
        assert gif.size == (GRID_PIXELS, GRID_PIXELS)


def test_executed_notebook_shows_a_grid_per_epoch_and_no_errors(reduced_run):
    _, executed = reduced_run
    cells = code_cells(executed)
    outputs = [output for cell in cells for output in cell["outputs"]]
    assert not [output for output in outputs if output["output_type"] == "error"]
    training_cell = next(cell for cell in cells if "gan.fit(" in "".join(cell["source"]))
    shown_grids = [output for output in training_cell["outputs"] if "image/png" in output.get("data", {})]
    assert len(shown_grids) == EPOCHS
    counts = [cell["execution_count"] for cell in cells]
    assert counts == list(range(1, len(cells) + 1))


def test_parameters_cell_is_tagged_for_papermill():
    tagged = [cell for cell in code_cells() if "parameters" in cell.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    source = "".join(tagged[0]["source"])
    for knob in ("EPOCHS", "BATCH_SIZE", "LATENT_DIM", "LEARNING_RATE", "BETA_1", "SEED", "TRAIN_SIZE",
                 "DATA_PATH", "OUTPUT_DIR", "CHECKPOINT_EVERY"):
        assert f"\n{knob} = " in "\n" + source, knob
