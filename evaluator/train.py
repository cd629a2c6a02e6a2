"""Retrain the frozen evaluator, evaluator/mnist_evaluator.keras, that scores every MNIST run (run by hand).

    python evaluator/train.py --data ../shared/data/mnist.npz

It trains the notebook's own `make_evaluator()` with its `train_evaluator()` on the 60,000 MNIST training digits
(seed 0, five epochs), saves the weights without the optimiser's state, and prints the accuracy on the 10,000 test
digits and the file's SHA-256. Put that SHA-256 into FROZEN_EVALUATOR_SHA256 in the notebook. A new evaluator is a
new ruler: FDs measured with the old one no longer compare with those measured with the new one.
"""

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the tests' way to load the notebook's functions
from conftest import load_notebook_functions  # noqa: E402

SEED = 0
EPOCHS = 5


def main(argv=None):
    """Train, save and describe the evaluator."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="", help="MNIST as an .npz in Keras' layout (default: Keras' download)")
    parser.add_argument("--output", type=Path, default=HERE / "mnist_evaluator.keras", help="where to write it")
    arguments = parser.parse_args(argv)
    notebook = load_notebook_functions()
    keras, np = notebook["keras"], notebook["np"]
    data, source = notebook["load_dataset"]("mnist", arguments.data)
    print(f"MNIST from {source}")
    keras.utils.set_random_seed(SEED)
    trained = notebook["train_evaluator"](notebook["scale_digits"](data["x_train"]), data["y_train"], EPOCHS)
    frozen = notebook["make_evaluator"]()  # uncompiled: the file holds the weights without Adam's moments
    frozen.set_weights(trained.get_weights())
    notebook["save_model"](frozen, arguments.output)
    logits = frozen.predict(notebook["scale_digits"](data["x_test"]), batch_size=1000, verbose=0)
    accuracy = float(np.mean(np.argmax(logits, axis=1) == data["y_test"]))
    print(f"Wrote {arguments.output} ({arguments.output.stat().st_size:,} bytes); {accuracy:.2%} right on the test digits.")
    print(f'FROZEN_EVALUATOR_SHA256 = "{notebook["sha256_of"](arguments.output)}"')


if __name__ == "__main__":
    main()
