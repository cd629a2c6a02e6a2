"""Shared fixtures: where the data is, how to run the notebook headless, and one reduced run per session."""

import ast
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO_ROOT / "mnist_gan.ipynb"
SHARED_MNIST = REPO_ROOT.parent / "shared" / "data" / "mnist.npz"

# The reduced run the tests share: small enough for CI, large enough to count per-epoch files.
REDUCED_RUN = {
    "MNIST_GAN_EPOCHS": "2",
    "MNIST_GAN_TRAIN_SIZE": "1024",
    "MNIST_GAN_BATCH_SIZE": "64",
    "MNIST_GAN_LATENT_DIM": "16",
    "MNIST_GAN_CHECKPOINT_EVERY": "1",
    "MNIST_GAN_EVALUATOR_EPOCHS": "1",
    "MNIST_GAN_EVAL_SAMPLES": "1000",
}


def mnist_path():
    """The MNIST .npz the tests use: MNIST_GAN_DATA_PATH, else ../shared/data/mnist.npz, else '' (Keras)."""
    if os.environ.get("MNIST_GAN_DATA_PATH"):
        return os.environ["MNIST_GAN_DATA_PATH"]
    return str(SHARED_MNIST) if SHARED_MNIST.is_file() else ""


def pytest_configure(config):
    """Point the nbval run of the notebook at a reduced run in a temporary folder, unless already set."""
    import tempfile

    os.environ.setdefault("MNIST_GAN_EPOCHS", "1")
    os.environ.setdefault("MNIST_GAN_TRAIN_SIZE", "2048")
    os.environ.setdefault("MNIST_GAN_EVALUATOR_EPOCHS", "1")
    os.environ.setdefault("MNIST_GAN_EVAL_SAMPLES", "1000")
    os.environ.setdefault("MNIST_GAN_OUTPUT_DIR", tempfile.mkdtemp(prefix="mnist_gan_nbval_"))
    if mnist_path():
        os.environ.setdefault("MNIST_GAN_DATA_PATH", mnist_path())


def notebook_env(output_dir, **overrides):
    """The environment for one headless run: this process's, minus every MNIST_GAN_ knob, plus the given ones."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MNIST_GAN_")}
    env["MNIST_GAN_OUTPUT_DIR"] = str(output_dir)
    env["MNIST_GAN_DATA_PATH"] = mnist_path()
    env.update(overrides)
    return env


def nbconvert_command(output_dir, name="run.ipynb", notebook=NOTEBOOK):
    """The `jupyter nbconvert --execute` command that writes the executed `notebook` to output_dir/name."""
    return [
        sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", str(notebook),
        "--output-dir", str(output_dir), "--output", name,
    ]


def run_nbconvert(output_dir, env, timeout=900, name="run.ipynb"):
    """Execute the notebook with `jupyter nbconvert --execute` into output_dir/name."""
    command = nbconvert_command(output_dir, name)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT, check=False)


def run_until_error(output_dir, **overrides):
    """Execute the notebook with the given MNIST_GAN_ variables; return the CellExecutionError it stops with."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO_ROOT)}})
    env = notebook_env(output_dir, **{"MNIST_GAN_EPOCHS": "1", "MNIST_GAN_TRAIN_SIZE": "256", **overrides})
    with pytest.raises(CellExecutionError) as raised:
        client.execute(env=env)
    return raised.value


def stream_text(notebook_path):
    """Everything the executed notebook printed, as one string."""
    return "".join(
        "".join(output.get("text", ""))
        for cell in code_cells(notebook_path)
        for output in cell["outputs"]
        if output["output_type"] == "stream"
    )


def read_history(output_dir):
    """The rows of output_dir/history.csv as dicts of floats."""
    with open(Path(output_dir) / "history.csv", newline="") as history_file:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(history_file)]


def saved_epoch(output_dir):
    """The epoch recorded in output_dir/training_state.npz, 0 when there is none."""
    path = Path(output_dir) / "training_state.npz"
    if not path.is_file():
        return 0
    with np.load(path) as archive:
        return int(archive["epoch"])


def tensorboard_events(folder):
    """Every value in the TensorBoard event files of `folder`, as {tag: [(step, value), ...]} in the order written;
    scalars as floats, images as uint8 arrays (height, width, channels)."""
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    events = {}
    for path in sorted(Path(folder).glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                tensor = tf.make_ndarray(value.tensor)
                if value.metadata.plugin_data.plugin_name == "images":  # [width, height, png bytes, ...]
                    tensor = tf.io.decode_png(tensor[2]).numpy()
                events.setdefault(value.tag, []).append((event.step, tensor if tensor.ndim else float(tensor)))
    return events


def code_cells(notebook_path=NOTEBOOK):
    """The code cells of a notebook, as dicts."""
    cells = json.loads(Path(notebook_path).read_text())["cells"]
    return [cell for cell in cells if cell["cell_type"] == "code"]


def cell_source(cell):
    """A cell's source as one string."""
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


@pytest.fixture(scope="session")
def reduced_run(tmp_path_factory):
    """Run the notebook once, headless, on a reduced run; return (output_dir, executed notebook path)."""
    run_dir = tmp_path_factory.mktemp("reduced_run")
    output_dir = run_dir / "outputs"
    result = run_nbconvert(run_dir, notebook_env(output_dir, **REDUCED_RUN))
    assert result.returncode == 0, result.stderr[-5000:]
    return output_dir, run_dir / "run.ipynb"


def fresh_output_dir(folder):
    """Create an empty folder/outputs; return its path. (MNIST runs are scored by the frozen evaluator: none to train.)"""
    output_dir = Path(folder) / "outputs"
    output_dir.mkdir(parents=True)
    return output_dir


def is_constant_assignment(node, defined=()):
    """True for `NAME = <expression>` with UPPER_CASE names, such as `IMAGE_SIZE = 28`, whose expression calls nothing
    but `tuple` and the functions in `defined` (such as the knob rules' `integers(1, 1000)`)."""
    names_upper = all(isinstance(target, ast.Name) and target.id.isupper() for target in node.targets)
    lambdas = [child for child in ast.walk(node.value) if isinstance(child, ast.Lambda)]  # run later, not when defined
    inside_lambdas = {id(part) for lambda_node in lambdas for part in ast.walk(lambda_node.body)}
    calls = [child for child in ast.walk(node.value) if isinstance(child, ast.Call) and id(child) not in inside_lambdas]
    return names_upper and all(isinstance(call.func, ast.Name) and call.func.id in {"tuple", *defined} for call in calls)


def load_notebook_functions():
    """The notebook's imports and function and class definitions, executed without running the story."""
    namespace = {}
    setup_cell, *other_cells = code_cells()
    exec(compile(cell_source(setup_cell), "setup", "exec"), namespace)  # noqa: S102 -- our own notebook
    for index, cell in enumerate(other_cells):
        for node in ast.parse(cell_source(cell)).body:  # in order: a definition may use a constant defined above it
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) or (
                isinstance(node, ast.Assign) and is_constant_assignment(node, namespace)
            ):
                exec(compile(ast.Module(body=[node], type_ignores=[]), f"cell {index + 1}", "exec"), namespace)  # noqa: S102
    return namespace


@pytest.fixture(scope="session")
def notebook_functions():
    """load_notebook_functions(), once per test session."""
    return load_notebook_functions()


def tiny_generator(functions, latent_dim=8, conditional=False, cluster_shares=None):
    """A 4-filter generator of the notebook's on `latent_dim`-d noise: plain, conditional on the digit, or picking one
    of the clusters of `cluster_shares` with its first noise entry."""
    label_dim = functions["LABEL_DIM"]
    input_dim = latent_dim + (label_dim if conditional else 0) + (label_dim - 1 if cluster_shares is not None else 0)
    body = functions["make_generator"](input_dim, 4)
    if conditional:
        return functions["add_label_input"](body, latent_dim)
    return body if cluster_shares is None else functions["add_cluster_input"](body, latent_dim, cluster_shares)


def tiny_gan(functions, seed=1, ema=0.0, dropout=0.0, loss="nonsaturating", critic_steps=1, conditional=False,
             cluster_shares=None, r1=0.0, mode_seeking=0.0):
    """A compiled GAN of the notebook's classes on 8-d noise with 4-filter networks, for unit tests; conditional on
    the digit, or clustered with clusters of `cluster_shares` of the digits."""
    keras.utils.set_random_seed(seed)
    generator = tiny_generator(functions, 8, conditional, cluster_shares)
    discriminator = functions["make_discriminator"](4, dropout)
    labels = "digits" if conditional else None if cluster_shares is None else "clusters"
    if labels:
        classes = functions["DIGITS"] if conditional else len(cluster_shares)
        discriminator = functions["add_projection"](discriminator, classes, labels)
    settings = {"latent_dim": 8, "seed": seed, "labels": labels, "ema": ema, "loss": loss, "r1": r1, "mode_seeking": mode_seeking}
    if loss == "wgan-gp":
        gan = functions["WGANGP"](generator, discriminator, critic_steps=critic_steps, **settings)
    else:
        gan = functions["GAN"](generator, discriminator, **settings)
    gan.compile(d_optimizer=keras.optimizers.Adam(1e-3), g_optimizer=keras.optimizers.Adam(1e-3))
    return gan


def default_parameter(name):
    """The default value of knob `name`, read from the notebook's parameters cell."""
    parameters = next(cell for cell in code_cells() if "parameters" in cell["metadata"].get("tags", []))
    return ast.literal_eval(re.search(rf"^{name} = (.+?)  #", cell_source(parameters), re.MULTILINE).group(1))
