"""Every knob, every kind of bad value, in the notebook's form and the environment's: a ValueError naming the knob."""

import json
import math

import nbformat
import pytest
from conftest import NOTEBOOK, REPO_ROOT, code_cells, default_parameter, notebook_env
from nbclient import NotebookClient

# Values outside each knob's range, by knob; a new knob must be added here.
OUT_OF_RANGE = {
    "EPOCHS": [0, -1, 1001], "TIME_LIMIT_MINUTES": [-0.5, 10000.5], "BATCH_SIZE": [0, 4097], "LATENT_DIM": [0, 1025],
    "FILTERS": [0, 513], "DROPOUT": [-0.1, 1.0], "LEARNING_RATE": [0.0, -1e-3], "FINAL_RATE_SHARE": [-0.1, 1.5], "BETA_1": [-0.1, 1.0],
    "SEED": [-1, 2**31], "TRAIN_SIZE": [-1, 10**9 + 1], "DATASET": ["cifar10", "MNIST"], "DATA_PATH": [],
    "OUTPUT_DIR": [" "], "CHECKPOINT_EVERY": [-1, 1001], "STEPS_PER_EXECUTION": [0, 1001],
    "ARCHITECTURE": ["dcgan"], "EVAL_EVERY": [-1, 1001], "EVAL_SAMPLES": [999, 10001], "EVALUATOR_EPOCHS": [0, 21],
    "FRESH": [], "EMA": [-0.1, 1.0], "CONDITIONAL": [], "CLUSTERS": [1, -1, 1001],
    "LOSS": ["wasserstein", "Hinge"], "CRITIC_STEPS": [0, 11], "R1_PENALTY": [-0.1, 1000], "MODE_SEEKING": [-0.1, 10],
    "EXPORT_COUNT": [-1, 10001],
    "EXPORT_FORMAT": ["jpg"], "EXPORT_SEED": [-1, 2**31],
}
# Values of another type than each kind of knob takes, as the notebook's cell could hold them.
WRONG_TYPES = {
    int: [2.5, "10", True, None, [1]],
    float: ["0.5", True, None, [0.5]],
    bool: ["True", 1, 0, None],
    str: [5, None, True, ["mnist"]],
}
# The same in the environment, where every value is text.
WRONG_TEXTS = {int: ["2.5", "ten", "1_0x"], float: ["half", "0.5.1"], bool: ["maybe", "2", "Truee"], str: []}
PATHS = ("DATA_PATH", "OUTPUT_DIR")  # "nan" and "inf" are fine names for files and folders


def bad_values(knob, kind):
    """The bad values of `knob` in the notebook's form and in the environment's (text)."""
    in_notebook = [*OUT_OF_RANGE[knob], *WRONG_TYPES[kind], math.nan, math.inf, -math.inf]
    in_environment = [str(value) for value in OUT_OF_RANGE[knob]] + WRONG_TEXTS[kind]
    if knob != "DATA_PATH":  # "" means Keras' download there
        in_notebook.append("")
        in_environment.append("")
    if knob not in PATHS:
        in_environment += ["nan", "inf", "-inf", " "]
    return in_notebook, in_environment


def test_every_knob_has_bad_values_listed(notebook_functions):
    assert set(OUT_OF_RANGE) == set(notebook_functions["KNOB_RULES"])


@pytest.mark.parametrize("knob", list(OUT_OF_RANGE))
def test_every_bad_value_of_a_knob_stops_with_a_value_error_that_names_it(notebook_functions, monkeypatch, knob):
    resolve, rule = notebook_functions["resolve_parameter"], notebook_functions["KNOB_RULES"][knob]
    monkeypatch.delenv(f"MNIST_GAN_{knob}", raising=False)
    default = default_parameter(knob)
    assert resolve(knob, default, *rule) == default  # the rule accepts the default: the refusals below mean something
    in_notebook, in_environment = bad_values(knob, rule[0])
    for value in in_notebook:
        with pytest.raises(ValueError, match=rf"^{knob} must be .*; got "):
            resolve(knob, value, *rule)
    for text in in_environment:
        monkeypatch.setenv(f"MNIST_GAN_{knob}", text)
        with pytest.raises(ValueError, match=rf"^{knob} \(from MNIST_GAN_{knob}\) must be .*; got .+\.$"):
            resolve(knob, default, *rule)


def test_the_knobs_are_checked_before_the_data_is_read():
    sources = [cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"]) for cell in code_cells()]
    checks = next(index for index, source in enumerate(sources) if "resolve_parameter(knob," in source)
    data = next(index for index, source in enumerate(sources) if "load_dataset(DATASET, DATA_PATH)" in source)
    assert checks < data
    assert "check_combinations(" in sources[data].split("prepare_output_dir(")[0]  # the cross-checks: before any file


def run_up_to_the_checks(output_dir, **overrides):
    """Execute the notebook up to its data cell (where the knobs that involve the data are checked); return its
    executed cells."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    last = next(index for index, cell in enumerate(notebook.cells) if "check_combinations(len(" in cell.source)
    notebook.cells = notebook.cells[: last + 1]
    client = NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO_ROOT)}})
    client.execute(env=notebook_env(output_dir, **overrides))
    return notebook.cells


def test_a_conditional_gan_may_take_one_noise_entry(tmp_path):
    # LATENT_DIM=1 is refused with clusters (the first entry picks the cluster), not when the labels replace them.
    cells = run_up_to_the_checks(tmp_path / "outputs", MNIST_GAN_CONDITIONAL="True", MNIST_GAN_LATENT_DIM="1",
                                 MNIST_GAN_TRAIN_SIZE="256")
    printed = "".join(output.get("text", "") for cell in cells if cell.cell_type == "code" for output in cell.outputs)
    assert "Training a conditional GAN with the nonsaturating loss" in printed and "x_train (" in printed


# The checks that involve several knobs, the dataset or the devices, called directly with the knobs (and the values
# the parameters cell derives from them: cluster_count, critic_steps) set in the notebook's namespace.
SENSIBLE = {"TRAIN_SIZE": 0, "BATCH_SIZE": 64, "LATENT_DIM": 64, "CLUSTERS": 200, "cluster_count": 200, "critic_steps": 1}
CROSS_CHECKS = [  # (knobs changed, images in the dataset, devices, how the message starts)
    ({"TRAIN_SIZE": 70000}, 60000, 1, "TRAIN_SIZE must be at most 60000, the training images in the dataset; got 70000."),
    ({"LATENT_DIM": 1, "CLUSTERS": 20, "cluster_count": 20}, 60000, 1, "LATENT_DIM must be at least 2 with CLUSTERS=20"),
    ({"TRAIN_SIZE": 256, "CLUSTERS": 300, "cluster_count": 300}, 60000, 1, "CLUSTERS must be at most the 256 training images; got 300."),
    ({"TRAIN_SIZE": 256, "critic_steps": 5}, 60000, 1, "BATCH_SIZE × CRITIC_STEPS must be at most the 256 training images; got 64 × 5."),
    ({"TRAIN_SIZE": 256, "BATCH_SIZE": 512}, 60000, 1, "BATCH_SIZE must be at most the 256 training images; got 512."),
    ({"BATCH_SIZE": 500}, 300, 1, "BATCH_SIZE must be at most the 300 training images; got 500."),
    ({"BATCH_SIZE": 63}, 60000, 2, "BATCH_SIZE must be a multiple of the 2 devices that share each batch; got 63."),
]


@pytest.mark.parametrize(("knobs", "images", "devices", "message"), CROSS_CHECKS)
def test_each_cross_check_stops_with_a_message_that_starts_with_its_knob(notebook_functions, monkeypatch, knobs, images,
                                                                           devices, message):
    for name, value in {**SENSIBLE, **knobs}.items():
        monkeypatch.setitem(notebook_functions, name, value)
    with pytest.raises(ValueError) as raised:
        notebook_functions["check_combinations"](images, devices)
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize("knobs", [{}, {"LATENT_DIM": 1, "cluster_count": 0}, {"TRAIN_SIZE": 256, "BATCH_SIZE": 256}])
def test_sensible_combinations_pass_the_cross_checks(notebook_functions, monkeypatch, knobs):
    # The second: a conditional GAN (no clusters) with one noise entry; the third: one batch of the whole set.
    for name, value in {**SENSIBLE, **knobs}.items():
        monkeypatch.setitem(notebook_functions, name, value)
    notebook_functions["check_combinations"](60000, 1)


def test_seed_0_works_and_each_epoch_is_a_new_permutation(tmp_path):
    # Dataset.shuffle with a tensor seed fails under TensorFlow's global seed 0; the stateless permutation does not.
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    last = next(index for index, cell in enumerate(notebook.cells) if "def training_batches(first_epoch)" in cell.source)
    probe = ('orders = [np.concatenate(list(epoch_batches(tf.constant(epoch, "int64")).as_numpy_iterator())) for epoch in (0, 1)]\n'
             'images, _ = next(iter(training_batches(0)))\n'
             'print(json.dumps({"sizes": [len(order) for order in orders], "distinct": [len(set(order)) for order in orders],\n'
             '                  "same": bool((orders[0] == orders[1]).all()), "shape": list(images.shape),\n'
             '                  "range": [float(images.numpy().min()), float(images.numpy().max())]}))')
    notebook.cells = [*notebook.cells[: last + 1], nbformat.v4.new_code_cell(probe)]
    client = NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO_ROOT)}})
    client.execute(env=notebook_env(tmp_path / "outputs", MNIST_GAN_SEED="0", MNIST_GAN_TRAIN_SIZE="256"))
    seen = json.loads("".join(output.get("text", "") for output in notebook.cells[-1].outputs))
    assert seen["sizes"] == [256, 256] and seen["distinct"] == [256, 256]  # 4 batches of 64: every image once
    assert not seen["same"]  # another order in the next epoch
    assert seen["shape"] == [64, 28, 28, 1] and -1 <= seen["range"][0] < seen["range"][1] <= 1
