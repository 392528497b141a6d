"""fp16's dynamic loss scaling (train.loss_scale): overflowing steps are skipped, the scale adapts.

The rule on its own (growth, halving, skipping, no retracing, checkpoints, replicas that
disagree), then both loops in fp16 on the CPU with an initial scale forced so high that the
first gradients overflow.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
OVERFLOW_LINE = "fp16: gradients overflowed (inf/NaN), step skipped"


def sgd_step(loss_scale, variable, optimizer):
    """A compiled step applying given *scaled* gradients to one variable through `loss_scale`."""
    import tensorflow as tf

    @tf.function
    def step(scaled_grad):
        return loss_scale.apply_if_finite(
            [scaled_grad], lambda grads: optimizer.apply_gradients(zip(grads, [variable]))
        )

    return step


def state(loss_scale) -> tuple[float, int]:
    return float(loss_scale.scale.numpy()), int(loss_scale.good_steps.numpy())


# ----------------------------------------------------------------------------- the rule
def test_scale_doubles_after_n_finite_steps_and_halves_on_overflow_skipping_the_step():
    import keras
    import tensorflow as tf

    from albert_ner.train.loss_scale import DynamicLossScale

    loss_scale = DynamicLossScale(initial_scale=8.0, growth_steps=3)
    variable = tf.Variable([1.0, 2.0])
    optimizer = keras.optimizers.SGD(learning_rate=1.0)
    optimizer.build([variable])
    step = sgd_step(loss_scale, variable, optimizer)

    assert bool(step(tf.constant([8.0, 16.0])))  # unscaled: [1, 2]
    np.testing.assert_array_equal(variable.numpy(), [0.0, 0.0])
    assert state(loss_scale) == (8.0, 1)
    step(tf.constant([0.0, 0.0]))
    assert state(loss_scale) == (8.0, 2)
    step(tf.constant([0.0, 0.0]))  # the third finite step in a row: doubled, count restarts
    assert state(loss_scale) == (16.0, 0)

    before = variable.numpy().copy()
    for bad in (np.inf, np.nan):
        assert not bool(step(tf.constant([bad, 1.0])))
        np.testing.assert_array_equal(variable.numpy(), before)  # nothing applied
    assert int(optimizer.iterations.numpy()) == 3  # the skipped steps did not count
    assert state(loss_scale) == (4.0, 0)  # halved twice

    assert bool(step(tf.constant([4.0, -4.0])))
    np.testing.assert_array_equal(variable.numpy(), [-1.0, 1.0])
    assert step.experimental_get_tracing_count() == 1  # the state is read in the graph, not baked in


def test_sparse_gradients_are_unscaled_and_checked():
    import keras
    import tensorflow as tf

    from albert_ner.train.loss_scale import DynamicLossScale

    loss_scale = DynamicLossScale(initial_scale=4.0, growth_steps=100)
    table = tf.Variable(np.zeros([3, 2], np.float32))
    optimizer = keras.optimizers.SGD(learning_rate=1.0)
    optimizer.build([table])
    step = sgd_step(loss_scale, table, optimizer)

    def rows(values):
        return tf.IndexedSlices(tf.constant(values, tf.float32), tf.constant([1]), tf.constant([3, 2]))

    assert not bool(step(rows([[np.inf, 0.0]])))
    assert state(loss_scale) == (2.0, 0)
    assert bool(step(rows([[2.0, 4.0]])))
    np.testing.assert_array_equal(table.numpy(), [[0, 0], [-1, -2], [0, 0]])


def test_the_loss_is_scaled_by_the_current_scale():
    import tensorflow as tf

    from albert_ner.train.loss_scale import DynamicLossScale

    loss_scale = DynamicLossScale(initial_scale=2.0**15)
    assert float(loss_scale.scale_loss(tf.constant(3.0))) == 3.0 * 2**15
    with pytest.raises(ValueError):
        DynamicLossScale(initial_scale=0.0)
    with pytest.raises(ValueError):
        DynamicLossScale(growth_steps=0)


def test_the_scale_survives_a_checkpoint(tmp_path):
    import keras

    from albert_ner.train.checkpoint import restore_checkpoint, save_checkpoint
    from albert_ner.train.loss_scale import DynamicLossScale
    from albert_ner.train.runtime import FP16_INITIAL_LOSS_SCALE

    model = keras.layers.Dense(2)
    model.build((None, 3))
    saved = DynamicLossScale(initial_scale=2.0**9, growth_steps=2000)
    saved.good_steps.assign(1234)
    save_checkpoint(tmp_path, model, {"loss_scale": saved}, {"step": 7})

    restored = DynamicLossScale()
    assert state(restored) == (FP16_INITIAL_LOSS_SCALE, 0)
    assert restore_checkpoint(tmp_path, model, {"loss_scale": restored})["step"] == 7
    assert state(restored) == (512.0, 1234)


# ----------------------------------------------------------------------------- replicas
REPLICA_SCRIPT = textwrap.dedent("""
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras

    from albert_ner.train.loss_scale import DynamicLossScale

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        loss_scale = DynamicLossScale(initial_scale=4.0, growth_steps=2)
        variable = tf.Variable([1.0])
        optimizer = keras.optimizers.SGD(learning_rate=1.0)
        optimizer.build([variable])

    def replica_fn(bad):
        # replica 1's gradient is inf when `bad`; replica 0's is always finite
        r = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.float32)
        grad = tf.where(bad & (r > 0.0), np.inf, 4.0)
        return loss_scale.apply_if_finite([tf.reshape(grad, [1])],
                                          lambda g: optimizer.apply_gradients(zip(g, [variable])))

    @tf.function
    def step(bad):
        applied = strategy.run(replica_fn, args=(bad,))
        return strategy.experimental_local_results(applied)

    def decisions(applied):  # the replicas' decisions, each told once
        return sorted({bool(a) for a in applied})

    def copies(v):
        return [float(np.asarray(x.numpy()).ravel()[0]) for x in v.values]

    print("skip", decisions(step(tf.constant(True))), copies(variable), copies(loss_scale.scale),
          int(optimizer.iterations.numpy()))
    print("apply", decisions(step(tf.constant(False))), copies(variable), copies(loss_scale.scale),
          int(optimizer.iterations.numpy()))
    print("grow", decisions(step(tf.constant(False))), copies(variable), copies(loss_scale.scale),
          copies(loss_scale.good_steps))
""")


def test_an_overflow_on_one_replica_skips_the_step_on_all():
    """MirroredStrategy over two logical CPUs (a fresh process: devices are set before TF starts)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run([sys.executable, "-c", REPLICA_SCRIPT], capture_output=True, text=True,
                            timeout=600, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.split()}
    # One decision, to skip, for both replicas: the variable and the counter stay, both copies of the scale halve.
    assert lines["skip"] == "skip [False] [1.0, 1.0] [2.0, 2.0] 0"
    # Both apply, the gradients (4 / 2 = 2 on each replica) are summed across replicas.
    assert lines["apply"] == "apply [True] [-3.0, -3.0] [2.0, 2.0] 1"
    assert lines["grow"] == "grow [True] [-7.0, -7.0] [4.0, 4.0] [0.0, 0.0]"


TRAINER_ON_REPLICAS_SCRIPT = textwrap.dedent("""
    import json
    import sys

    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from albert_ner.train.loop import Trainer, TrainArgs

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    strategy.is_chief = True
    trainer = Trainer(TrainArgs(
        train_file=sys.argv[1], output_dir=sys.argv[2], model_config="micro", precision="fp16",
        max_train_sentences=32, max_steps=int(sys.argv[3]), batch_size=8, max_seq_length=24,
        export=False, seed=3), strategy=strategy)
    trainer.loss_scale.scale.assign(2.0**20)
    final = trainer.run()
    arrays = [np.asarray(v.numpy()) for v in trainer.model.variables]
    print(json.dumps({
        "scale": [float(v.numpy()) for v in trainer.loss_scale.scale.values],
        "iterations": [int(o.iterations.numpy()) for o in (trainer.optimizer, trainer.crf_optimizer)],
        "finite": all(np.isfinite(a).all() for a in arrays if np.issubdtype(a.dtype, np.floating)),
        "loss": final["loss"],
    }))
""")


@pytest.mark.slow  # two replicas trace the step twice
def test_fp16_training_on_two_replicas_skips_together(synthetic_data, tmp_path):
    """Trainer's distributed step (strategy.run) in fp16, the first steps overflowing."""
    import json

    steps = 5
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(
        [sys.executable, "-c", TRAINER_ON_REPLICAS_SCRIPT, str(synthetic_data["train"]), str(tmp_path / "model"),
         str(steps)], capture_output=True, text=True, timeout=900, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 replica(s), precision fp16" in result.stdout
    skipped = result.stdout.count(OVERFLOW_LINE)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert 1 <= skipped < steps
    assert report["scale"] == [2.0**20 / 2**skipped] * 2  # both copies of the state agree
    assert report["iterations"] == [steps - skipped] * 2
    assert report["finite"] and np.isfinite(report["loss"])


# ----------------------------------------------------------------------------- the loops
def weights(variables) -> list[np.ndarray]:
    return [np.array(v.numpy()) for v in variables]


def all_finite(variables) -> bool:
    arrays = [np.asarray(v.numpy()) for v in variables]
    return all(np.isfinite(a).all() for a in arrays if np.issubdtype(a.dtype, np.floating))


def test_fp16_training_skips_overflowing_steps_and_recovers(synthetic_data, tmp_path, capsys):
    import dataclasses

    from albert_ner.train.loop import Trainer, TrainArgs

    steps = 16
    args = TrainArgs(
        train_file=str(synthetic_data["train"]), dev_file=str(synthetic_data["dev"]),
        output_dir=str(tmp_path / "model"), model_config="micro", precision="fp16",
        max_train_sentences=64, max_steps=steps, eval_every=steps, log_every=steps,
        batch_size=8, max_seq_length=24, export=False, seed=3,
    )
    trainer = Trainer(args)
    assert set(trainer._optimizers()) == {"main", "crf", "loss_scale"}
    optimizers = [trainer.optimizer, trainer.crf_optimizer]
    initial = weights(trainer.model.trainable_variables)
    initial_slots = [weights(o.variables) for o in optimizers]

    # One step at 2**40: the CRF's float32 gradients are cast into fp16 on the way back and overflow.
    trainer.loss_scale.scale.assign(2.0**40)
    loss = trainer._run_step(list(range(8)))
    assert np.isfinite(loss)  # the forward pass was fine; its gradients were not
    assert OVERFLOW_LINE in capsys.readouterr().out
    for before, after in zip(initial, weights(trainer.model.trainable_variables)):
        np.testing.assert_array_equal(before, after)
    for optimizer, before in zip(optimizers, initial_slots):  # no slot, no step counter moved
        for b, a in zip(before, weights(optimizer.variables)):
            np.testing.assert_array_equal(b, a)
        assert int(optimizer.iterations.numpy()) == 0
    assert state(trainer.loss_scale) == (2.0**39, 0)

    # The run from 2**24: some more skips, then updates; never a NaN.
    trainer.loss_scale.scale.assign(2.0**24)
    final = trainer.run()
    printed = capsys.readouterr().out
    skipped = printed.count(OVERFLOW_LINE)
    assert 1 <= skipped < steps
    for optimizer in optimizers:  # both optimizers applied exactly the steps not skipped
        assert int(optimizer.iterations.numpy()) == steps - skipped
    scale, good_steps = state(trainer.loss_scale)
    assert scale == 2.0**24 / 2**skipped  # halved once per skip, no growth in 16 steps
    assert 0 < good_steps <= steps - skipped
    assert all_finite(trainer.model.variables) and all(all_finite(o.variables) for o in optimizers)
    assert any(not np.array_equal(b, a) for b, a in zip(initial, weights(trainer.model.trainable_variables)))
    assert np.isfinite(final["loss"])
    assert trainer._train_step.step_function.experimental_get_tracing_count() == 1

    # The resume checkpoint holds the scale, and a resumed run continues from it.
    resumed = Trainer(dataclasses.replace(args, resume=True))
    assert state(resumed.loss_scale) != (scale, good_steps)
    assert resumed.restore_checkpoint()["step"] == steps
    assert state(resumed.loss_scale) == (scale, good_steps)


def test_fp32_and_bf16_runs_have_no_loss_scale(synthetic_data, tmp_path):
    from albert_ner.train.loop import Trainer, TrainArgs

    for precision in ("fp32", "bf16"):
        trainer = Trainer(TrainArgs(
            train_file=str(synthetic_data["train"]), output_dir=str(tmp_path / precision),
            model_config="micro", precision=precision, max_train_sentences=16, max_steps=1,
            batch_size=8, max_seq_length=24, export=False,
        ))
        assert trainer.loss_scale is None
        assert set(trainer._optimizers()) == {"main", "crf"}  # checkpoints as before
        assert not hasattr(trainer._train_step, "step_function")  # the compiled step itself


def test_fp16_pretraining_skips_overflowing_steps_and_ends_finite(synthetic_data, tmp_path, capsys):
    from albert_ner.data.readers import read_corpus
    from albert_ner.pretrain.loop import PretrainArgs, Pretrainer

    text = tmp_path / "text.txt"
    text.write_text("\n".join(e.text for e in read_corpus(synthetic_data["train"]).examples[:60]) + "\n",
                    encoding="utf-8")
    steps = 12
    pretrainer = Pretrainer(PretrainArgs(
        text_files=[str(text)], output_dir=str(tmp_path / "pretrained"), model_config="micro",
        precision="fp16", batch_size=8, max_seq_length=24, max_steps=steps, eval_every=steps, seed=3,
    ))
    assert set(pretrainer._optimizers()) == {"main", "loss_scale"}
    pretrainer.loss_scale.scale.assign(2.0**24)  # overflows the first gradients
    final = pretrainer.run()
    skipped = capsys.readouterr().out.count(OVERFLOW_LINE)
    assert 1 <= skipped < steps
    assert int(pretrainer.optimizer.iterations.numpy()) == steps - skipped
    assert state(pretrainer.loss_scale)[0] == 2.0**24 / 2**skipped
    assert all_finite(pretrainer.model.variables) and all_finite(pretrainer.optimizer.variables)
    assert np.isfinite(final["loss"]) and np.isfinite(final["mlm_loss"])
    assert (pretrainer.checkpoint_dir / "latest" / "optimizer_loss_scale.npz").exists()


def test_a_checkpoint_without_loss_scale_state_resumes_with_a_fresh_scale(tmp_path):
    """A bf16/fp32 run's checkpoint (or one from before dynamic scaling) resumed in fp16, e.g.
    a spot job restarted on a GPU that `--precision auto` runs in fp16: the scale starts
    afresh, everything else is restored; any other missing file is still a damaged checkpoint."""
    import keras

    from albert_ner.train.checkpoint import NoUsableCheckpoint, restore_checkpoint, save_checkpoint
    from albert_ner.train.loss_scale import DynamicLossScale
    from albert_ner.train.runtime import FP16_INITIAL_LOSS_SCALE

    model = keras.layers.Dense(2)
    model.build((None, 3))
    main = keras.optimizers.Adam()
    main.build(model.trainable_variables)
    main.iterations.assign(41)
    save_checkpoint(tmp_path, model, {"main": main}, {"step": 41})  # no loss scale: a bf16 run

    fresh = keras.optimizers.Adam()
    fresh.build(model.trainable_variables)
    scale = DynamicLossScale()
    lines = []
    state = restore_checkpoint(tmp_path, model, {"main": fresh, "loss_scale": scale}, log=lines.append)
    assert state["step"] == 41 and int(fresh.iterations.numpy()) == 41
    assert float(scale.scale.numpy()) == FP16_INITIAL_LOSS_SCALE and int(scale.good_steps.numpy()) == 0
    assert any("no optimizer_loss_scale.npz" in line and "initial values" in line for line in lines), lines

    other = keras.optimizers.Adam()
    other.build(model.trainable_variables)
    with pytest.raises(NoUsableCheckpoint, match="optimizer_crf.npz is missing"):
        restore_checkpoint(tmp_path, model, {"main": fresh, "crf": other}, log=lines.append)
