"""Shared fixtures: data (real MSRA when present, generated otherwise) and one trained model.

MSRA is read from $MSRA_DIR (default ../shared/data/msra beside the checkout) and never
copied into the repository; without it every test still runs on generated data.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
MSRA_DIR = Path(os.environ.get("MSRA_DIR", REPO.parent / "shared" / "data" / "msra"))


def msra_available() -> bool:
    return (MSRA_DIR / "train.txt").exists() and (MSRA_DIR / "dev.txt").exists()


def write_head(source: Path, target: Path, sentences: int) -> Path:
    """Copies the first N sentences of a CoNLL file (a small real sample for a test)."""
    from albert_ner.data.readers import read_conll
    from albert_ner.data.writers import write_conll

    write_conll(read_conll(source).examples[:sentences], target)
    return target


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> dict:
    """Generated train/dev/test files that a micro model learns in a hundred steps."""
    from albert_ner.data.synthetic import write_synthetic_split

    directory = tmp_path_factory.mktemp("synthetic")
    return write_synthetic_split(directory, seed=7, n_train=600, n_dev=120, n_test=120)


@pytest.fixture(scope="session")
def real_sample(tmp_path_factory, synthetic_data) -> dict:
    """A few hundred real MSRA sentences when the corpus is there, else the generated data."""
    if not msra_available():
        return dict(synthetic_data, real=False)
    directory = tmp_path_factory.mktemp("msra_sample")
    return {
        "train": write_head(MSRA_DIR / "train.txt", directory / "train.txt", 600),
        "dev": write_head(MSRA_DIR / "dev.txt", directory / "dev.txt", 150),
        "real": True,
    }


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory, synthetic_data) -> Path:
    """A micro ALBERT-CRF trained briefly on generated data, exported (a model directory)."""
    from albert_ner.train.loop import TrainArgs, run_training

    out = tmp_path_factory.mktemp("model") / "micro"
    run_training(
        TrainArgs(
            train_file=str(synthetic_data["train"]),
            dev_file=str(synthetic_data["dev"]),
            output_dir=str(out),
            model_config="micro",
            max_steps=150,
            eval_every=50,
            log_every=50,
            batch_size=16,
            max_seq_length=40,  # short windows so generated long sentences cross windows
            seed=3,
        )
    )
    return out


@pytest.fixture(autouse=True)
def float32_keras_policy():
    """Every test starts and ends under Keras' float32 policy.

    The mixed-precision policy is process-wide: `--precision auto` picks bf16 for transformers
    on this CPU, and code that builds a `Trainer` without running it (benchmark helpers, tests
    of its set-up) leaves that policy behind for every model built later in the process.
    """
    import keras

    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")
