"""Training speed of the default GAN's step for several batch sizes, widths and precisions (run by hand).

    python benchmarks/step_speed.py 64x48 128x48 64x32
    python benchmarks/step_speed.py --precision float32 mixed_bfloat16 --repeat 3 64x32

Each argument is BATCH_SIZExFILTERS. It builds the notebook's own networks and GAN with the defaults of its parameters
cell (clusters, noise length, moving average, R1 penalty, mode seeking, Adam) under each Keras precision policy given
(default: float32; the notebook picks mixed_bfloat16 on a CPU with bfloat16 instructions), traces the step on random
images, then times whole fit() calls of STEPS_PER_EXECUTION and prints images per second and milliseconds per step.
Precisions alternate, `--repeat` times. Run nothing else meanwhile: the two cores are shared.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' way to load the notebook's functions
from conftest import load_notebook_functions  # noqa: E402

IMAGES_PER_CONFIGURATION = 24576


def time_step(notebook, batch_size, filters):
    """Images per second of `IMAGES_PER_CONFIGURATION` images of training after a warm-up."""
    keras, np, tf = notebook["keras"], notebook["np"], notebook["tf"]
    clusters, latent_dim, per_call = notebook["CLUSTERS"], notebook["LATENT_DIM"], notebook["STEPS_PER_EXECUTION"]
    keras.utils.set_random_seed(0)
    body = notebook["make_generator"](latent_dim + notebook["LABEL_DIM"] - 1, filters)
    generator = notebook["add_cluster_input"](body, latent_dim, np.full(clusters, 1 / clusters))
    discriminator = notebook["add_projection"](notebook["make_discriminator"](filters, notebook["DROPOUT"]), clusters, "clusters")
    gan = notebook["GAN"](generator, discriminator, latent_dim=latent_dim, seed=0, labels="clusters", ema=notebook["EMA"],
                          r1=notebook["R1_PENALTY"], mode_seeking=notebook["MODE_SEEKING"])
    optimizers = [notebook["make_optimizer"](notebook["LEARNING_RATE"], notebook["BETA_1"]) for _ in range(2)]
    gan.compile(d_optimizer=optimizers[0], g_optimizer=optimizers[1], steps_per_execution=per_call)
    images = np.random.default_rng(0).uniform(-1, 1, (batch_size * 96, 28, 28, 1)).astype("float32")
    labels = np.random.default_rng(1).integers(0, clusters, len(images)).astype("int32")
    batches = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size, drop_remainder=True).repeat()
    gan.fit(batches, epochs=1, steps_per_epoch=2 * per_call, verbose=0)  # traces the step
    steps = max(8 * per_call, IMAGES_PER_CONFIGURATION // batch_size // per_call * per_call)
    start = time.perf_counter()
    gan.fit(batches, epochs=1, steps_per_epoch=steps, verbose=0)
    return steps * batch_size / (time.perf_counter() - start), steps


def main(argv=None):
    """Time each BATCH_SIZExFILTERS configuration under each precision and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configurations", nargs="*", default=["64x48", "64x32"], help="BATCH_SIZExFILTERS, e.g. 64x32")
    parser.add_argument("--precision", nargs="+", default=["float32"], help="Keras policies, e.g. float32 mixed_bfloat16")
    parser.add_argument("--repeat", type=int, default=1, help="measurements of each pair")
    arguments = parser.parse_args(argv)
    notebook = load_notebook_functions()
    for _ in range(arguments.repeat):
        for configuration in arguments.configurations:
            batch_size, filters = (int(part) for part in configuration.split("x"))
            for precision in arguments.precision:
                notebook["keras"].mixed_precision.set_global_policy(precision)
                images_per_second, steps = time_step(notebook, batch_size, filters)
                print(f"BATCH_SIZE {batch_size:4d}, FILTERS {filters:3d}, {precision:>14}: {images_per_second:6.0f} images/s, "
                      f"{1000 * batch_size / images_per_second:6.1f} ms per step ({steps} steps)", flush=True)


if __name__ == "__main__":
    main()
