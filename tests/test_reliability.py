"""Never lose a run: resume after a kill, atomic saves, a divergence guard and reproducible runs."""

import contextlib
import json
import os
import signal
import subprocess
import time

import keras
import numpy as np
import psutil
import pytest
from conftest import (
    REPO_ROOT,
    fresh_output_dir,
    nbconvert_command,
    notebook_env,
    read_history,
    run_nbconvert,
    run_until_error,
    saved_epoch,
    stream_text,
    tensorboard_events,
)
from PIL import Image

# Small enough for CI, long enough (32 steps and a score per epoch) to kill a run in the middle of an epoch.
SMALL_RUN = {
    "MNIST_GAN_EPOCHS": "3",
    "MNIST_GAN_TRAIN_SIZE": "2240",
    "MNIST_GAN_BATCH_SIZE": "64",
    "MNIST_GAN_LATENT_DIM": "16",
    "MNIST_GAN_CHECKPOINT_EVERY": "1",
    "MNIST_GAN_EVAL_SAMPLES": "1000",
}
STEPS_PER_EPOCH = 32  # 2,240 // 64 = 35 whole batches, cut to whole calls of STEPS_PER_EXECUTION = 8 steps


def start_and_kill(run_dir, env, should_kill, timeout=600):
    """Start a headless run in its own process group and SIGKILL the whole group once should_kill() is true."""
    with open(run_dir / "stderr.txt", "w") as stderr:
        process = subprocess.Popen(
            nbconvert_command(run_dir, "killed.ipynb"), env=env, cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    try:
        while not should_kill():
            assert process.poll() is None, "the run ended before the test could kill it"
            assert time.monotonic() < deadline, "the run never reached the point where the test kills it"
            time.sleep(0.02)
    finally:
        # The kernel runs in a session of its own: kill it too, at once, or it may save one more epoch before it notices.
        try:
            kernels = psutil.Process(process.pid).children(recursive=True)
        except psutil.NoSuchProcess:  # the run had ended
            kernels = []
        os.killpg(process.pid, signal.SIGKILL)
        for kernel in kernels:
            with contextlib.suppress(psutil.NoSuchProcess):
                kernel.kill()
        psutil.wait_procs(kernels, timeout=30)
        process.wait()


def grid_names(output_dir):
    """Names of the epoch grids in output_dir/grids."""
    return sorted(path.name for path in (output_dir / "grids").glob("*.png"))


@pytest.fixture(scope="module")
def killed_resumed_and_fresh(tmp_path_factory):
    """Kill a run in the middle of epoch 2 or 3 and resume it to the end; run the finished run again with another
    LEARNING_RATE; then start over with FRESH=True and train the same three epochs without interruption."""
    run_dir = tmp_path_factory.mktemp("resume")
    output_dir = fresh_output_dir(run_dir)
    env = notebook_env(output_dir, **SMALL_RUN)

    def in_the_middle_of_an_epoch():
        # Kill 1.5 seconds after an epoch's state is saved, in the middle of the next epoch (32 steps of about 0.1 s).
        if saved_epoch(output_dir) < 1:
            return False
        time.sleep(1.5)
        return True

    start_and_kill(run_dir, env, in_the_middle_of_an_epoch)
    killed = {"epoch": saved_epoch(output_dir), "history": read_history(output_dir), "grids": grid_names(output_dir)}
    first_grid = np.asarray(Image.open(output_dir / "grids" / "epoch_001.png"))

    resumed = run_nbconvert(run_dir, env, name="resumed.ipynb")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    finished_state = (output_dir / "training_state.npz").read_bytes()
    finished = run_nbconvert(run_dir, {**env, "MNIST_GAN_LEARNING_RATE": "1e-3"}, name="finished.ipynb")
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert (output_dir / "training_state.npz").read_bytes() == finished_state  # nothing was trained
    fresh = run_nbconvert(run_dir, {**env, "MNIST_GAN_FRESH": "1"}, name="fresh.ipynb")
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    (resumed_dir,) = run_dir.glob("outputs-old-*")  # FRESH moved the resumed run's outputs aside
    return {
        "killed": killed, "first_grid": first_grid, "run_dir": run_dir,
        "resumed_dir": resumed_dir, "fresh_dir": output_dir,
    }


def test_the_kill_came_mid_run(killed_resumed_and_fresh):
    killed = killed_resumed_and_fresh["killed"]
    assert 1 <= killed["epoch"] < 3
    assert [row["epoch"] for row in killed["history"]] == list(range(1, killed["epoch"] + 1))


def test_resumed_run_says_so_in_one_line(killed_resumed_and_fresh):
    text = stream_text(killed_resumed_and_fresh["run_dir"] / "resumed.ipynb")
    epoch = killed_resumed_and_fresh["killed"]["epoch"]
    assert text.count("Resuming after epoch") == 1
    assert f"Resuming after epoch {epoch} of 3 from" in text


def test_resumed_run_ends_as_if_never_interrupted(killed_resumed_and_fresh):
    output_dir, killed = killed_resumed_and_fresh["resumed_dir"], killed_resumed_and_fresh["killed"]
    history = read_history(output_dir)
    assert [row["epoch"] for row in history] == [1, 2, 3]  # no duplicated and no missing rows
    losses = ("d_loss", "g_loss", "D(x)", "D(G(z))")  # FD and classifier score are only added after training
    kept = [{name: row[name] for name in losses} for row in history[: killed["epoch"]]]
    assert kept == [{name: row[name] for name in losses} for row in killed["history"]]  # the rows before the kill, as they were
    assert grid_names(output_dir) == ["epoch_001.png", "epoch_002.png", "epoch_003.png"]
    with Image.open(output_dir / "progress.gif") as gif:
        assert gif.n_frames == 3
    checkpoints = sorted(path.name for path in (output_dir / "checkpoints").glob("*.keras"))
    assert checkpoints == [f"generator_epoch_{epoch:03d}.keras" for epoch in (1, 2, 3)]
    assert not list(output_dir.rglob("*.partial.*"))


def assert_same_training(output_dir, reference_dir):
    """The state (networks, moving average, optimisers, noise generator) and losses of two runs are bit for bit equal."""
    with np.load(output_dir / "training_state.npz") as state, np.load(reference_dir / "training_state.npz") as reference:
        assert state.files == reference.files
        for key in state.files:
            if key not in ("train_seconds", "history"):  # the time differs; the history is compared below
                np.testing.assert_array_equal(state[key], reference[key], err_msg=key)
    losses = ("d_loss", "g_loss", "D(x)", "D(G(z))")
    assert [[row[name] for name in losses] for row in read_history(output_dir)] == [
        [row[name] for name in losses] for row in read_history(reference_dir)]


def test_resumed_run_equals_an_uninterrupted_one(killed_resumed_and_fresh):
    assert_same_training(killed_resumed_and_fresh["resumed_dir"], killed_resumed_and_fresh["fresh_dir"])
    for name in ("epoch_002.png", "epoch_003.png"):
        resumed_grid = np.asarray(Image.open(killed_resumed_and_fresh["resumed_dir"] / "grids" / name))
        np.testing.assert_array_equal(resumed_grid, np.asarray(Image.open(killed_resumed_and_fresh["fresh_dir"] / "grids" / name)))


def test_a_finished_run_says_that_a_changed_learning_rate_changes_nothing(killed_resumed_and_fresh):
    text = stream_text(killed_resumed_and_fresh["run_dir"] / "finished.ipynb")
    assert "holds a finished run of 3 epochs: nothing is left to train" in text
    assert "LEARNING_RATE=0.001 has no effect: that run trained with 0.0008." in text
    assert "raise EPOCHS" in text and "FRESH=True" in text and "Resuming" not in text


def test_resumed_run_continues_the_tensorboard_curves_without_duplicates(killed_resumed_and_fresh):
    output_dir = killed_resumed_and_fresh["resumed_dir"]
    assert len(list((output_dir / "logs" / "train").glob("events.out.tfevents.*"))) >= 2  # one file per session
    training = tensorboard_events(output_dir / "logs" / "train")
    for tag in ("epoch_d_loss", "epoch_g_loss", "epoch_D(x)", "epoch_D(G(z))", "fixed_noise_grid"):
        assert [step for step, _ in training[tag]] == [1, 2, 3], tag
    np.testing.assert_allclose([value for _, value in training["epoch_g_loss"]], [row["g_loss"] for row in read_history(output_dir)], rtol=1e-6)
    scores = tensorboard_events(output_dir / "logs" / "scores")  # rewritten whole after each session's training
    assert [step for step, _ in scores["epoch_fd"]] == [1, 2, 3]


def test_resumed_run_continues_the_optimiser_state(killed_resumed_and_fresh):
    output_dir, killed = killed_resumed_and_fresh["resumed_dir"], killed_resumed_and_fresh["killed"]
    with np.load(output_dir / "training_state.npz") as state:
        # Adam's step counters count every step of all three epochs: the resumed run did not start from zero.
        assert int(state["g_optimizer_000"]) == int(state["d_optimizer_000"]) == 3 * STEPS_PER_EPOCH
        assert int(state["epoch"]) == 3
    history = read_history(output_dir)
    first_resumed = history[killed["epoch"]]
    fresh_first = read_history(killed_resumed_and_fresh["fresh_dir"])[0]
    for loss in ("d_loss", "g_loss"):
        # Not a replay of a fresh start, which SEED would make exact. (How close the losses stay to the killed
        # run's last epoch is no test: at the default learning rate they swing by 0.3 between small epochs.)
        assert first_resumed[loss] != fresh_first[loss], loss


def test_fresh_moves_the_old_outputs_aside_and_starts_over(killed_resumed_and_fresh):
    fresh_dir = killed_resumed_and_fresh["fresh_dir"]
    text = stream_text(killed_resumed_and_fresh["run_dir"] / "fresh.ipynb")
    assert "Resuming" not in text
    assert "FRESH=True: moved the earlier outputs aside to outputs-old-" in text
    assert [row["epoch"] for row in read_history(fresh_dir)] == [1, 2, 3]
    assert grid_names(fresh_dir) == ["epoch_001.png", "epoch_002.png", "epoch_003.png"]
    assert "Scored by the frozen evaluator" in text  # none trained


def test_same_seed_gives_the_same_first_epoch(killed_resumed_and_fresh):
    fresh_dir, killed = killed_resumed_and_fresh["fresh_dir"], killed_resumed_and_fresh["killed"]
    fresh_first, killed_first = read_history(fresh_dir)[0], killed["history"][0]
    for column in ("d_loss", "g_loss", "D(x)", "D(G(z))"):
        assert fresh_first[column] == killed_first[column], column
    fresh_grid = np.asarray(Image.open(fresh_dir / "grids" / "epoch_001.png"))
    np.testing.assert_array_equal(fresh_grid, killed_resumed_and_fresh["first_grid"])


def test_a_kill_during_a_save_leaves_the_previous_good_files(tmp_path, killed_resumed_and_fresh):
    output_dir = fresh_output_dir(tmp_path)
    # The tests' hook: every save pauses between writing its temporary file and moving it into place.
    env = notebook_env(output_dir, **SMALL_RUN, MNIST_GAN_TEST_SAVE_DELAY="1.5")
    partial_state = output_dir / "training_state.partial.npz"
    start_and_kill(tmp_path, env, lambda: saved_epoch(output_dir) == 1 and partial_state.exists())

    assert partial_state.exists(), "the kill came during the save of epoch 2's state"
    assert saved_epoch(output_dir) == 1  # the previous state is intact and readable
    assert [row["epoch"] for row in read_history(output_dir)] == [1]
    for grid in (output_dir / "grids").glob("*.png"):
        with Image.open(grid) as image:
            image.load()
    for model_path in (output_dir / "checkpoints").glob("*.keras"):
        if ".partial." not in model_path.name:
            keras.models.load_model(model_path)

    resumed = run_nbconvert(tmp_path, {**env, "MNIST_GAN_TEST_SAVE_DELAY": "0"}, name="resumed.ipynb")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [row["epoch"] for row in read_history(output_dir)] == [1, 2, 3]
    assert not list(output_dir.rglob("*.partial.*"))
    assert_same_training(output_dir, killed_resumed_and_fresh["fresh_dir"])  # as if the kill had never happened


def test_divergence_stops_at_once_and_keeps_the_last_good_generator(tmp_path):
    output_dir = fresh_output_dir(tmp_path)
    settings = {**SMALL_RUN, "MNIST_GAN_EPOCHS": "1", "MNIST_GAN_TRAIN_SIZE": "1024"}
    first = run_nbconvert(tmp_path, notebook_env(output_dir, **settings))
    assert first.returncode == 0, first.stderr[-3000:]

    # Going on at an absurd learning rate blows the weights up within the second epoch.
    error = run_until_error(output_dir, **{**settings, "MNIST_GAN_EPOCHS": "2", "MNIST_GAN_LEARNING_RATE": "1e12"})
    assert error.ename == "FloatingPointError"
    assert "diverged in epoch 2" in error.evalue and "no longer finite" in error.evalue
    assert "generator of epoch 1" in error.evalue and "generator.keras" in error.evalue
    assert "LEARNING_RATE (now 1000000000000.0)" in error.evalue
    assert saved_epoch(output_dir) == 1
    assert [row["epoch"] for row in read_history(output_dir)] == [1]
    assert not (output_dir / "grids" / "epoch_002.png").exists()
    generator = keras.models.load_model(output_dir / "generator.keras")
    with np.load(output_dir / "training_state.npz") as state:
        # The default EMA is on, so the generator kept is epoch 1's moving average.
        saved_weights = [state[f"ema_generator_{index:03d}"] for index in range(len(generator.weights))]
    for weight, saved in zip(generator.get_weights(), saved_weights, strict=True):
        np.testing.assert_array_equal(weight, saved)


def test_divergence_in_the_first_epoch_keeps_nothing(tmp_path):
    output_dir = fresh_output_dir(tmp_path)
    error = run_until_error(output_dir, **{**SMALL_RUN, "MNIST_GAN_TRAIN_SIZE": "1024", "MNIST_GAN_LEARNING_RATE": "1e12"})
    assert error.ename == "FloatingPointError"
    assert "diverged in epoch 1" in error.evalue
    assert "no generator to keep" in error.evalue and "LEARNING_RATE" in error.evalue
    assert not (output_dir / "generator.keras").exists()
    assert not (output_dir / "training_state.npz").exists()


def test_time_limit_stops_mid_epoch_and_a_rerun_trains_on(tmp_path):
    output_dir = fresh_output_dir(tmp_path)
    env = notebook_env(output_dir, **SMALL_RUN, MNIST_GAN_TIME_LIMIT_MINUTES="0.0001")  # 6 ms: over after one call
    limited = run_nbconvert(tmp_path, env, name="limited.ipynb")
    assert limited.returncode == 0, limited.stderr[-3000:]

    text = stream_text(tmp_path / "limited.ipynb")
    assert "TIME_LIMIT_MINUTES=0.0001 reached" in text and "stopped in epoch 1 of 3" in text
    assert "Trained 1 of 3 epochs in" in text  # the closing line
    steps_per_execution = 8
    with np.load(output_dir / "training_state.npz") as state:
        assert int(state["epoch"]) == 1  # the cut epoch counts as trained
        assert int(state["g_optimizer_000"]) == steps_per_execution  # one call, not the epoch's 32 steps
    assert [row["epoch"] for row in read_history(output_dir)] == [1]
    assert grid_names(output_dir) == ["epoch_001.png"]
    scores = json.loads((output_dir / "scores.json").read_text())
    assert scores["images_per_second"] == pytest.approx(steps_per_execution * 64 / scores["train_seconds"])
    assert keras.models.load_model(output_dir / "generator.keras").output_shape == (None, 28, 28, 1)

    resumed = run_nbconvert(tmp_path, {**env, "MNIST_GAN_TIME_LIMIT_MINUTES": "0"}, name="resumed.ipynb")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming after epoch 1 of 3 from" in stream_text(tmp_path / "resumed.ipynb")
    assert [row["epoch"] for row in read_history(output_dir)] == [1, 2, 3]
    with np.load(output_dir / "training_state.npz") as state:
        assert int(state["g_optimizer_000"]) == steps_per_execution + 2 * STEPS_PER_EPOCH
