"""Unit tests for the notebook's pure helpers, run without executing the notebook."""

import numpy as np
import pytest
from PIL import Image


def test_to_pixels_maps_generator_range_to_bytes(notebook_functions):
    pixels = notebook_functions["to_pixels"](np.array([-1.0, 0.0, 1.0, 2.0] * 196).reshape(1, 28, 28, 1))
    assert pixels.dtype == np.uint8 and pixels.shape == (1, 28, 28)
    assert pixels[0, 0, :4].tolist() == [0, 128, 255, 255]


def test_tile_digits_places_each_image_in_its_cell(notebook_functions):
    tile_digits = notebook_functions["tile_digits"]
    # Image k is filled with one value, so its position in the grid can be read back.
    levels = np.linspace(-1, 1, 6)
    images = np.stack([np.full((28, 28, 1), level) for level in levels])
    grid = tile_digits(images, rows=2, columns=3)
    assert grid.shape == (56, 84)
    for index, level in enumerate(levels):
        row, column = divmod(index, 3)
        block = grid[row * 28:(row + 1) * 28, column * 28:(column + 1) * 28]
        assert (block == round((level + 1) * 127.5)).all()


def test_tile_digits_rejects_the_wrong_count(notebook_functions):
    with pytest.raises(ValueError, match="A 8×8 grid needs 64 images; got 3"):
        notebook_functions["tile_digits"](np.zeros((3, 28, 28, 1)))


def test_save_gif_writes_every_frame_in_order(notebook_functions, tmp_path):
    paths = []
    for value in (0, 100, 200):
        paths.append(notebook_functions["save_png"](np.full((56, 56), value, "uint8"), tmp_path / f"f{value}.png"))
    gif_path = notebook_functions["save_gif"](paths, tmp_path / "progress.gif")
    with Image.open(gif_path) as gif:
        assert gif.n_frames == 3
        corners = []
        for frame in range(3):
            gif.seek(frame)
            corners.append(np.asarray(gif.convert("L"))[-1, -1])  # the grid sits below the epoch's header
    assert corners == [0, 100, 200]


@pytest.mark.parametrize(
    ("raw", "kind", "expected"),
    [("7", int, 7), ("0.5", float, 0.5), ("3", float, 3.0), ("data/mnist.npz", str, "data/mnist.npz")],
)
def test_resolve_parameter_reads_the_environment(notebook_functions, monkeypatch, raw, kind, expected):
    monkeypatch.setenv("MNIST_GAN_KNOB", raw)
    value = notebook_functions["resolve_parameter"]("KNOB", kind(), kind, lambda v: True, "anything")
    assert value == expected and type(value) is kind


def test_resolve_parameter_keeps_the_cell_value_without_environment(notebook_functions, monkeypatch):
    monkeypatch.delenv("MNIST_GAN_KNOB", raising=False)
    assert notebook_functions["resolve_parameter"]("KNOB", 5, int, lambda v: v > 0, "positive") == 5


@pytest.mark.parametrize("bad_value", [True, 2.5, "3", 0])
def test_resolve_parameter_rejects_wrong_types_and_ranges(notebook_functions, monkeypatch, bad_value):
    monkeypatch.delenv("MNIST_GAN_KNOB", raising=False)
    with pytest.raises(ValueError, match=r"^KNOB must be a positive integer; got "):
        notebook_functions["resolve_parameter"]("KNOB", bad_value, int, lambda v: v > 0, "a positive integer")


def test_check_dataset_arrays_names_what_it_found(notebook_functions):
    arrays = {
        "x_train": np.zeros((4, 28, 28), "float32"),
        "y_train": np.zeros(4, "uint8"),
        "x_test": np.zeros((2, 28, 28), "uint8"),
        "y_test": np.zeros(2, "uint8"),
    }
    with pytest.raises(ValueError, match=r"x_train must be \(N, 28, 28\) uint8; found x_train \(4, 28, 28\) float32"):
        notebook_functions["check_dataset_arrays"](arrays, "test data")
