"""The pretraining loop: masked-LM training of the encoder on unlabelled text.

`run_pretraining(PretrainArgs(...))` is what `albert-ner pretrain`, the SageMaker
`pretraining` route and notebook 01 call. It reads text (`pretrain.data`), masks it
(`pretrain.masking`), trains `model.mlm.MaskedLM` with the training loop's optimizer, batching
and checkpoints (`train/`), evaluates the MLM loss and accuracy on held-out lines, and writes
a directory that `albert-ner train --init-checkpoint DIR` takes (`checkpoints.native`):

  OUTPUT_DIR/
    encoder_config.json   encoder_weights.npz   vocab.txt      the pretrained encoder (+ MLM head)
    metrics.jsonl         one line per evaluation: step, epoch, loss, mlm_loss, mlm_accuracy, ...
    final_metrics.json    pretraining_args.json  checkpoints/   (resumable state)

Resume is exact: the batch order of an epoch is a pure function of (seed, epoch), the masks of
a sequence of (seed, epoch, index), and a checkpoint holds every model and optimizer variable.
SIGTERM, checkpoint fallback and full disks are handled as in `train.loop` (`train.interrupt`,
`train.checkpoint`, `durable_io`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np

from albert_ner.durable_io import append_jsonl, explain_disk_full, rewrite_jsonl, variable_bytes
from albert_ner.model_dir import write_json
from albert_ner.train.checkpoint import restore_checkpoint, save_checkpoint
from albert_ner.train.interrupt import StopSignals
from albert_ner.train.runtime import (
    check_precision,
    detect_hardware,
    format_eta,
    normalize_determinism,
    resolve_determinism,
    resolve_precision,
    restore_policy,
    set_precision,
)

DEFAULT_LR_SCRATCH = 1e-3  # as `train` from random init
DEFAULT_LR_PRETRAINED = 1e-4  # continuing a pretrained encoder on domain text
# The no-transformer stack (embeddings + bigrams + BiLSTM): small and shallow, it takes a
# larger step; 2e-3 is what its feasibility run used (BENCHMARKS.md, small data).
DEFAULT_LR_SEQUENCE = 2e-3
DEFAULT_EPOCHS = 3.0


@dataclasses.dataclass
class PretrainArgs:
    """Every option of a pretraining run (the `albert-ner pretrain` flags, underscored)."""

    text_files: list
    output_dir: str
    text_format: str = "auto"
    model_config: str | None = None  # preset or JSON; default: the checkpoint's, else "tiny"
    # The BiLSTM/bigram layers above the encoder (as `train`'s); None: the checkpoint's, else
    # the no-download recipe's for model_config "chars" and none for a transformer.
    lstm_units: int | None = None
    bigram_buckets: int | None = None
    bigram_size: int | None = None
    init_checkpoint: str | None = None
    checkpoint_layout: str | None = None
    vocab_file: str | None = None
    max_seq_length: int = 128
    whole_word_mask: bool = False
    mask_rate: float = 0.15
    max_steps: int | None = None
    epochs: float | None = None  # default 3, or as many as fit with only --max-minutes
    max_minutes: float | None = None
    batch_size: int = 32
    learning_rate: float | None = None
    warmup_proportion: float = 0.1
    weight_decay: float = 0.01
    clip_norm: float = 1.0
    precision: str = "auto"  # as `train`: auto, fp32, bf16 or fp16 (train.runtime)
    seed: int = 42
    eval_every: int = 500
    log_every: int = 50
    checkpoint_every: int | None = None
    checkpoint_dir: str | None = None
    resume: bool = False
    heldout_fraction: float = 0.02
    heldout_max: int = 2000
    max_lines: int | None = None
    deterministic: str | bool = "auto"  # as `train`: auto (on for CPU, off with a GPU), on, off

    def __post_init__(self):
        if isinstance(self.text_files, (str, Path)):
            self.text_files = [self.text_files]
        self.text_files = [str(p) for p in self.text_files]
        if not self.text_files:
            raise ValueError("pretraining needs at least one --text-file")
        if self.max_seq_length < 3:
            raise ValueError("max_seq_length must be at least 3 ([CLS], one character, [SEP])")
        if self.batch_size < 1:
            raise ValueError("batch_size must be positive")
        check_precision(self.precision)
        self.deterministic = normalize_determinism(self.deterministic)
        for name in ("max_steps", "epochs", "max_minutes", "max_lines"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction must be in [0, 1), got {self.heldout_fraction}")


def log(message: str) -> None:
    print(message, flush=True)


def heldout_split(n_lines: int, fraction: float, limit: int, seed: int) -> np.ndarray:
    """Bool [n_lines]: True for the held-out lines, a seeded random choice.

    `fraction` of the lines, at most `limit`; small corpora keep at least min(50, 10 %) lines
    out, so the metrics are more than noise. Fewer than 10 lines (or fraction 0) keep none.
    """
    heldout = np.zeros(n_lines, bool)
    if fraction <= 0 or n_lines < 10:
        return heldout
    count = min(limit, max(round(n_lines * fraction), min(50, n_lines // 10)))
    heldout[np.random.default_rng([seed, 7]).permutation(n_lines)[:count]] = True
    return heldout


class Pretrainer:
    """Holds data, model and optimizer of one pretraining run; `run()` trains to the end."""

    def __init__(self, args: PretrainArgs):
        # The mixed-precision policy is process-wide and set during set-up: a set-up that
        # fails (a bad checkpoint, say) must not leave it behind for later models.
        self._previous_policy = None
        try:
            self._setup(args)
        except BaseException:
            if self._previous_policy is not None:
                restore_policy(self._previous_policy)
            raise

    def _setup(self, args: PretrainArgs):
        from albert_ner.checkpoints.starting_point import load_pretrained_and_vocab, resolve_encoder_config
        from albert_ner.pretrain.data import line_pieces, read_texts

        self.args = args
        self.started = time.monotonic()
        # The text first: a bad file stops the run before TensorFlow has even loaded.
        lines, summaries = read_texts(args.text_files, args.text_format)
        for summary in summaries:
            log(f"text: {summary}")
        if args.max_lines:
            lines = lines[: args.max_lines]

        import keras
        import tensorflow as tf

        from albert_ner.model.mlm import MaskedLM
        from albert_ner.pretrain.masking import MaskingSpec, word_start_flags
        from albert_ner.text.tokenizer import CharTokenizer
        from albert_ner.train.optimizer import make_optimizer

        self.output_dir = Path(args.output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_dir = Path(args.checkpoint_dir or self.output_dir / "checkpoints")
        self.metrics_path = self.output_dir / "metrics.jsonl"

        keras.utils.set_random_seed(args.seed)
        hardware = detect_hardware()
        determinism = resolve_determinism(args.deterministic, hardware)
        log(f"deterministic ops: {'on' if determinism.value else 'off'} ({determinism.reason})")
        if determinism.value:
            tf.config.experimental.enable_op_determinism()
        self.deterministic_used = determinism.value

        pretrained, vocab = load_pretrained_and_vocab(
            args.init_checkpoint, args.checkpoint_layout, args.vocab_file, lines, log
        )
        self.vocab = vocab
        tokenizer = CharTokenizer(vocab)
        self.encoder_config = resolve_encoder_config(
            args.model_config or (None if pretrained is not None else "tiny"), pretrained, vocab
        )
        self.stack_options = self._stack_options(args, pretrained)
        if args.max_seq_length > self.encoder_config.max_position_embeddings:
            raise ValueError(
                f"max_seq_length {args.max_seq_length} exceeds the encoder's "
                f"{self.encoder_config.max_position_embeddings} position embeddings"
            )
        self.spec = MaskingSpec.from_vocab(vocab, args.max_seq_length, args.mask_rate)
        # After the encoder is known, before the model is built (layers take the policy
        # then); run() puts the previous policy back, since it is process-wide.
        precision = resolve_precision(args.precision, self.encoder_config.model_type, hardware)
        self.precision = precision.value
        log(f"precision: {self.precision} ({precision.reason})")
        self._previous_policy = set_precision(self.precision)

        # Held-out lines (whole documents) first, then pieces that fit the window.
        window = args.max_seq_length - 2
        heldout = heldout_split(len(lines), args.heldout_fraction, args.heldout_max, args.seed)
        train_texts, heldout_texts = [], []
        for line, held in zip(lines, heldout):
            (heldout_texts if held else train_texts).extend(line_pieces(line, window))
        if not train_texts:
            raise ValueError("no training text left after the held-out split")

        def frame(texts):
            return [np.asarray([vocab.cls_id, *tokenizer.encode(t), vocab.sep_id], np.int32) for t in texts]

        self.sequences, self.heldout_sequences = frame(train_texts), frame(heldout_texts)
        self.word_starts = self.heldout_word_starts = None
        if args.whole_word_mask:
            t0 = time.time()
            self.word_starts = word_start_flags(train_texts)
            self.heldout_word_starts = word_start_flags(heldout_texts)
            log(f"whole-word masking: segmented {len(train_texts) + len(heldout_texts)} pieces "
                f"with jieba in {time.time() - t0:.1f} s")
        self.lengths = [len(s) - 2 for s in self.sequences]
        self.steps_per_epoch = math.ceil(len(self.sequences) / args.batch_size)
        if args.max_steps:
            self.total_steps = args.max_steps
        elif args.epochs is None and args.max_minutes:
            self.total_steps = 1000 * self.steps_per_epoch  # provisional: the budget re-fits it
        else:
            self.total_steps = max(1, math.ceil((args.epochs or DEFAULT_EPOCHS) * self.steps_per_epoch))
        self.step_cap = self.total_steps
        log(
            f"data: {len(lines)} lines → {len(self.sequences)} training pieces of ≤{window} "
            f"characters ({sum(self.lengths)} characters), {len(self.heldout_sequences)} held-out "
            f"pieces from {int(heldout.sum())} lines; {self.steps_per_epoch} steps/epoch, "
            f"{'up to ' if args.max_minutes else ''}{self.total_steps} steps; masking "
            f"{args.mask_rate:.0%} ({'whole words' if args.whole_word_mask else 'characters'})"
        )

        if args.learning_rate:
            self.learning_rate = args.learning_rate
        elif self.encoder_config.model_type == "chars":
            self.learning_rate = DEFAULT_LR_SEQUENCE
        else:
            self.learning_rate = DEFAULT_LR_PRETRAINED if pretrained is not None else DEFAULT_LR_SCRATCH
        self.model = MaskedLM(self.encoder_config, **self.stack_options, name="masked_lm")
        self.model.build_variables()
        if pretrained is not None:
            pretrained.load_into(self.model.encoder, new="the masked-LM head (mlm/*)")
            if pretrained.stack_options:
                log(pretrained.load_stack_into(self.model.bigrams, self.model.lstm))
            log(pretrained.load_mlm_head(self.model.mlm))
        self.warmup_steps = int(args.warmup_proportion * self.total_steps)
        self.optimizer = make_optimizer(
            self.learning_rate, self.warmup_steps, self.total_steps, args.weight_decay,
            args.clip_norm, name="adamw",
        )
        self.optimizer.build(self.model.trainable_variables)
        self.schedule = self.optimizer.schedule  # re-fitted by a time budget (train.budget)
        n_params = sum(int(np.prod(v.shape)) for v in self.model.trainable_variables)
        log(
            f"model: {self.encoder_config.model_type} (hidden {self.encoder_config.hidden_size}, "
            f"{self.encoder_config.num_hidden_layers} layers){self._stack_description()} + masked-LM head, {n_params:,} "
            f"trainable parameters, learning rate {self.learning_rate:g}, precision {self.precision}"
        )
        self._build_functions()

    @staticmethod
    def _stack_options(args, pretrained) -> dict:
        """The BiLSTM/bigram options: the user's, else the checkpoint's, else the recipe's."""
        from albert_ner.train.recipe import SEQUENCE_DEFAULTS

        chosen = {}
        for name, recipe_value in SEQUENCE_DEFAULTS.items():
            value = getattr(args, name)
            if value is None and pretrained is not None and pretrained.stack_options:
                value = pretrained.stack_options[name]
            elif value is None:
                value = recipe_value if (args.model_config or "") == "chars" or (
                    pretrained is not None and pretrained.config.model_type == "chars") else 0
            chosen[name] = int(value)
        return chosen

    def _stack_description(self) -> str:
        parts = []
        if self.stack_options["bigram_buckets"]:
            parts.append(f" + bigrams ({self.stack_options['bigram_buckets']}×{self.stack_options['bigram_size']})")
        if self.stack_options["lstm_units"]:
            parts.append(f" + BiLSTM({self.stack_options['lstm_units']})")
        return "".join(parts)

    # ------------------------------------------------------------------ graph functions
    def _build_functions(self) -> None:
        import tensorflow as tf

        model, optimizer = self.model, self.optimizer
        variables = model.trainable_variables
        # fp16 needs loss scaling so small gradients survive (train.loss_scale, as `train`'s);
        # bf16 has fp32's exponent range: fp32 and bf16 steps are built without any of it.
        self.loss_scale = None
        if self.precision == "fp16":
            from albert_ner.train.loss_scale import DynamicLossScale

            self.loss_scale = DynamicLossScale()
        loss_scale = self.loss_scale
        spec = [tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, None], tf.int32),
                tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, None], tf.float32)]

        def apply_gradients(grads):
            optimizer.apply_gradients(zip(grads, variables))

        @tf.function(input_signature=spec)
        def train_step(input_ids, positions, labels, weights):
            """The batch's mean MLM loss; fp16: (loss, whether the gradients were applied)."""
            with tf.GradientTape() as tape:
                loss_sum, correct, count = model.masked_lm_sums(input_ids, positions, labels, weights, training=True)
                loss = loss_sum / tf.maximum(count, 1.0)  # mean over the batch's predictions
                target = loss if loss_scale is None else loss_scale.scale_loss(loss)
            grads = tape.gradient(target, variables)
            if loss_scale is None:
                apply_gradients(grads)
                return loss
            return loss, loss_scale.apply_if_finite(grads, apply_gradients)

        @tf.function(input_signature=spec)
        def eval_step(input_ids, positions, labels, weights):
            return model.masked_lm_sums(input_ids, positions, labels, weights, training=False)

        self._train_step, self._eval_step = train_step, eval_step
        if loss_scale is not None:  # the loop takes the loss alone; skipped steps are logged
            from albert_ner.train.loss_scale import reporting_skips

            self._train_step = reporting_skips(train_step, loss_scale, log)

    def _batch(self, indices, epoch):
        from albert_ner.pretrain.masking import masked_batch

        return masked_batch(self.sequences, indices, self.spec, self.args.seed, epoch, self.word_starts)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict:
        """MLM loss (mean cross-entropy per prediction) and accuracy on the held-out pieces.

        The held-out masks are fixed (one draw per piece), so every evaluation of a run scores
        the same predictions.
        """
        from albert_ner.pretrain.masking import masked_batch
        from albert_ner.text.batching import sentence_batches

        if not self.heldout_sequences:
            return {}
        loss_sum = correct = count = 0.0
        lengths = [len(s) for s in self.heldout_sequences]
        for indices in sentence_batches(lengths, max_tokens=self.args.batch_size * 2 * self.args.max_seq_length):
            batch = masked_batch(self.heldout_sequences, indices, self.spec, self.args.seed, None,
                                 self.heldout_word_starts)
            s, c, n = (float(x) for x in self._eval_step(*batch))
            loss_sum, correct, count = loss_sum + s, correct + c, count + n
        return {"mlm_loss": loss_sum / max(count, 1.0), "mlm_accuracy": correct / max(count, 1.0),
                "mlm_predictions": int(count)}

    # ------------------------------------------------------------------ checkpoints
    def _optimizers(self) -> dict:
        """The training state a checkpoint saves besides the model, by name (each with a
        `.variables` list): the optimizer and, in fp16 runs only, the loss scale."""
        optimizers = {"main": self.optimizer}
        if self.loss_scale is not None:
            optimizers["loss_scale"] = self.loss_scale
        return optimizers

    def save_checkpoint(self, state: dict) -> None:
        save_checkpoint(self.checkpoint_dir, self.model, self._optimizers(), state)

    def restore_checkpoint(self) -> dict | None:
        return restore_checkpoint(self.checkpoint_dir, self.model, self._optimizers(), log=log)

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict:
        try:
            return self._run()
        finally:  # the mixed-precision policy is process-wide: later models get the old one
            restore_policy(self._previous_policy)

    def _run(self) -> dict:
        from albert_ner.train.batching import epoch_batches
        from albert_ner.train.budget import TimeBudget

        args = self.args
        checkpoint_every = args.checkpoint_every or args.eval_every
        state = {"step": 0, "loss_sum": 0.0, "loss_count": 0, "train_seconds": 0.0,
                 "samples_since_eval": 0, "seconds_since_eval": 0.0, "elapsed_seconds": 0.0,
                 "total_steps": self.total_steps, "warmup_steps": self.warmup_steps}
        saved_step = None  # the step of the newest checkpoint on disk
        if args.resume:
            restored = self.restore_checkpoint()
            if restored is None:
                log(f"resume: no checkpoint in {self.checkpoint_dir}, starting from step 0")
            else:
                state = restored
                saved_step = state["step"]
                log(f"resume: continuing from step {state['step']} ({self.checkpoint_dir})")
                self._truncate_metrics(state["step"])
        else:
            self.metrics_path.unlink(missing_ok=True)
        if args.max_minutes:  # a resumed budgeted run continues the schedule it had fitted
            self._fit_schedule(state, state["total_steps"], state["warmup_steps"])
        else:  # otherwise the options decide (a resume may extend --max-steps)
            self._fit_schedule(state, self.total_steps, self.warmup_steps)
        self._write_run_files()

        budget = None
        if args.max_minutes:
            # Earlier sessions of a resumed run, and this one's data loading and model
            # building, count against the same budget.
            spent = state["elapsed_seconds"] + time.monotonic() - self.started
            budget = TimeBudget(args.max_minutes, already_spent=spent)
            budget.export_seconds = 5.0  # writing the encoder directory is quick
        # A resumed run keeps its fitted warm-up; a fresh one fixes it once steps are timed.
        warmup_fixed = bool(args.resume and state["step"] > 0) or budget is None

        step = start_step = state["step"]
        batches, batches_epoch = None, None
        session_start = time.time()
        with StopSignals() as stop:  # SIGTERM: finish the step, checkpoint it, stop
            while step < state["total_steps"]:
                epoch, position = divmod(step, self.steps_per_epoch)
                if batches_epoch != epoch:
                    batches = epoch_batches(self.lengths, args.batch_size, args.seed, epoch)
                    batches_epoch = epoch
                indices = batches[position]
                t0 = time.time()
                loss = float(self._train_step(*self._batch(indices, epoch)))
                elapsed = time.time() - t0
                if not math.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss} at step {step + 1}; try a lower --learning-rate")
                step += 1
                state["step"] = step
                state["loss_sum"] += loss
                state["loss_count"] += 1
                state["train_seconds"] += elapsed
                state["samples_since_eval"] += len(indices)
                state["seconds_since_eval"] += elapsed
                if budget is not None:
                    budget.record_step(elapsed)
                    fitted = budget.steps_that_fit(step)
                    if fitted is not None:  # the schedule ends when the time does
                        total = max(step, min(self.step_cap, fitted))
                        if not warmup_fixed:
                            state["warmup_steps"] = int(args.warmup_proportion * total)
                            warmup_fixed = True
                        self._fit_schedule(state, total, state["warmup_steps"])
                    if budget.should_stop():
                        self._fit_schedule(state, step, state["warmup_steps"])
                    state["elapsed_seconds"] = budget.elapsed()
                    if step >= state["total_steps"] and step < self.step_cap:
                        log(f"time budget of {args.max_minutes:g} minutes reached at step {step} "
                            f"({budget.elapsed() / 60:.1f} min used); evaluating and writing the encoder")
                last = step >= state["total_steps"]
                if step % args.log_every == 0 or last:
                    rate = state["samples_since_eval"] / max(state["seconds_since_eval"], 1e-9)
                    per_step = (time.time() - session_start) / max(step - start_step, 1)
                    log(
                        f"step {step}/{state['total_steps']} ({100 * step / state['total_steps']:.0f}%) "
                        f"epoch {step / self.steps_per_epoch:.2f} "
                        f"mlm loss {state['loss_sum'] / max(state['loss_count'], 1):.4f} "
                        f"{rate:.1f} samples/s ETA {format_eta(per_step * (state['total_steps'] - step))}"
                    )
                if step % args.eval_every == 0 or last:
                    eval_seconds = self._evaluate_and_record(state)
                    if budget is not None:
                        budget.record_eval(eval_seconds)
                if step % checkpoint_every == 0 or last:
                    self.save_checkpoint(state)
                    saved_step = step
                if stop.received:
                    stop.interrupt(step, self.checkpoint_dir, lambda: self.save_checkpoint(state), saved_step, log)
        return self._finish(state)

    def _fit_schedule(self, state: dict, total: int, warmup: int) -> None:
        """Sets the learning-rate schedule's end (and warm-up) and remembers them for resume."""
        state["total_steps"], state["warmup_steps"] = int(total), int(warmup)
        self.schedule.fit(int(warmup), int(total))

    def _evaluate_and_record(self, state: dict) -> float:
        step = state["step"]
        record = {
            "step": step,
            "epoch": round(step / self.steps_per_epoch, 4),
            "loss": state["loss_sum"] / max(state["loss_count"], 1),
        }
        t0 = time.time()
        record.update(self.evaluate())
        eval_seconds = time.time() - t0
        record["learning_rate"] = float(self.optimizer.learning_rate)
        record["samples_per_sec"] = state["samples_since_eval"] / max(state["seconds_since_eval"], 1e-9)
        record["wall_time"] = state["train_seconds"]
        record["eval_seconds"] = eval_seconds
        state["loss_sum"], state["loss_count"] = 0.0, 0
        state["samples_since_eval"], state["seconds_since_eval"] = 0, 0.0
        # One line per metric, like `train`'s eval block; SageMaker metric definitions regex them.
        log(f"***** Eval results at step {step} *****")
        for key in ("mlm_loss", "mlm_accuracy", "loss"):
            if key in record:
                log(f"{key} = {record[key]:.6g}")
        log(f"global_step = {step}")
        append_jsonl(self.metrics_path, record)
        return eval_seconds

    def read_metrics(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def _truncate_metrics(self, step: int) -> None:
        """Drops metrics lines written after the checkpoint a resumed run restarts from."""
        rewrite_jsonl(self.metrics_path, [r for r in self.read_metrics() if r["step"] <= step])

    def _write_run_files(self) -> None:
        args = dataclasses.asdict(self.args)
        args["learning_rate_used"] = self.learning_rate
        args["precision_used"] = self.precision  # what `auto` (or the option) came to
        args["deterministic_used"] = self.deterministic_used
        write_json(self.output_dir / "pretraining_args.json", args)

    def _finish(self, state: dict) -> dict:
        from albert_ner.checkpoints.native import write_encoder_dir

        records = self.read_metrics()
        final = dict(records[-1] if records else {}, steps=state["step"])
        write_json(self.output_dir / "final_metrics.json", final)
        # write_encoder_dir replaces each file with a rename, so a full disk leaves the earlier
        # files; the estimate is the model's variables (what encoder_weights.npz holds, at most).
        with explain_disk_full(self.output_dir, variable_bytes(self.model.variables),
                               "Files written there before are unchanged."):
            write_encoder_dir(self.output_dir, self.model.encoder, self.vocab, mlm_head=self.model.mlm,
                              bigrams=self.model.bigrams, lstm=self.model.lstm)
        log(f"wrote the pretrained encoder to {self.output_dir} "
            f"(use it with: albert-ner train --init-checkpoint {self.output_dir} ...)")
        log(f"done: {state['step']} steps in {format_eta(state['train_seconds'])} of training")
        return final


def run_pretraining(args: PretrainArgs) -> dict:
    """Pretrains, evaluates, checkpoints and writes the encoder directory; returns the last metrics."""
    return Pretrainer(args).run()
