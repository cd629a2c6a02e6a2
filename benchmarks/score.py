"""Score a saved generator with the frozen evaluator, the way the notebook's final evaluation does (run by hand).

    python benchmarks/score.py outputs/generator.keras --seed 42 --data ../shared/data/mnist.npz --output score.json

It draws EVAL_SAMPLES digits from the noise the notebook draws for a run of that SEED, scores them against the
MNIST test digits with evaluator/mnist_evaluator.keras, scores as many real training digits the same way (the
reference), and prints both as JSON. Useful to put a generator trained before the evaluator was frozen on the same
ruler as today's runs.
"""

import argparse
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))  # the tests' way to load the notebook's functions
from conftest import load_notebook_functions  # noqa: E402


def main(argv=None):
    """Score the generator and print the scores."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("generator", type=Path, help="a generator.keras saved by the notebook")
    parser.add_argument("--seed", type=int, default=42, help="the SEED of the run (picks the evaluation noise)")
    parser.add_argument("--samples", type=int, default=10000, help="EVAL_SAMPLES of the run")
    parser.add_argument("--data", default="", help="MNIST as an .npz in Keras' layout (default: Keras' download)")
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    arguments = parser.parse_args(argv)
    notebook = load_notebook_functions()
    keras = notebook["keras"]
    evaluator = notebook["load_frozen_evaluator"](REPO_ROOT / "evaluator" / "mnist_evaluator.keras",
                                                  notebook["FROZEN_EVALUATOR_SHA256"])
    notebook["evaluator_features"] = keras.Model(evaluator.input, [evaluator.get_layer("features").output, evaluator.output])
    data, _ = notebook["load_dataset"]("mnist", arguments.data)
    reference_features = notebook["describe"](notebook["scale_digits"](data["x_test"][: arguments.samples]))[0]
    generator = keras.models.load_model(arguments.generator)
    conditional = isinstance(generator.input, list)
    latent_dim = generator.input_shape[0][-1] if conditional else generator.input_shape[-1]
    noise, labels, real_indices = notebook["evaluation_inputs"](arguments.samples, latent_dim, arguments.seed, conditional,
                                                                len(data["x_train"]))
    generated = notebook["evaluate"](notebook["generate_digits"](generator, noise, labels), reference_features,
                                     data["x_train"], labels=labels)[0]
    reference = notebook["evaluate"](notebook["scale_digits"](data["x_train"][real_indices]), reference_features,
                                     data["x_train"], own_indices=real_indices)[0]
    report = json.dumps({**generated, "reference": reference, "evaluator_sha256": notebook["sha256_of"](
        REPO_ROOT / "evaluator" / "mnist_evaluator.keras")}, indent=2)
    print(report)
    if arguments.output:
        arguments.output.write_text(report + "\n")


if __name__ == "__main__":
    main()
