"""The training loop: our own `tf.function` step, periodic evaluation, exact resume.

`run_training(TrainArgs(...))` is what `albert-ner train`, the SageMaker `train` entrypoint
and the notebooks call. It turns a training file (and a dev file) into a model directory
(see `model_dir.py`), printing progress and the article's `eval_f = 0.9483` lines.

Resume is exact: a checkpoint holds every model variable (including the dropout RNG state),
both optimizers' slots and step counters, and the data position (epoch, batch) — the batch
order of an epoch is a pure function of (seed, epoch), so nothing else needs saving.

SIGTERM (a spot interruption, StopTrainingJob) ends the run after the current step with a
checkpoint of that step (`train.interrupt`); checkpoints keep the previous one as a fallback
(`train.checkpoint`); every file is written atomically, and a full disk is one clear error
(`durable_io`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import NoReturn

import numpy as np

from albert_ner.data.readers import read_corpus
from albert_ner.checkpoints.starting_point import load_pretrained_and_vocab, resolve_encoder_config
from albert_ner.data.schemes import TagSet
from albert_ner.durable_io import append_jsonl, replacing, rewrite_jsonl
from albert_ner.model_dir import ModelDir, load_weights, save_weights, write_json
from albert_ner.train.checkpoint import restore_checkpoint, save_checkpoint
from albert_ner.train.interrupt import StopSignals
from albert_ner.train.recipe import describe as describe_recipe
from albert_ner.train.recipe import NO_LEXICON, fill_defaults, missing_lexicon_note
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



@dataclasses.dataclass
class TrainArgs:
    """Every option of a training run (the `albert-ner train` flags, underscored)."""

    train_file: str
    output_dir: str
    dev_file: str | None = None
    # Unset (None) recipe options are filled by train.recipe from what the run starts from:
    # no --init-checkpoint → the BiLSTM-CRF over character + bigram embeddings.
    model_config: str | None = None  # preset or JSON; default: the checkpoint's, else "chars"
    init_checkpoint: str | None = None
    checkpoint_layout: str | None = None  # force a layout instead of detecting it
    vocab_file: str | None = None
    head: str = "crf"
    # Locality bias (model.sequence): a BiLSTM of this many units per direction between
    # encoder and classifier, and hashed character-bigram embeddings (0 = off).
    lstm_units: int | None = None
    bigram_buckets: int | None = None
    bigram_size: int | None = None
    # Dictionary-word features (model.lexicon): a word-list file, "jieba" (the dictionary in
    # the jieba package) or "none"; None = the recipe's choice. Words up to lexicon_max_len.
    lexicon: str | None = None
    lexicon_max_len: int = 8
    # Each character's profile in the lexicon's words as features too (Tagger.lexicon_profile);
    # None = the recipe's choice.
    lexicon_profile: bool | None = None
    # Share of training characters the model reads as [UNK] (Tagger.unk_dropout); None = recipe.
    unk_dropout: float | None = None
    # Copies of the training set with entities swapped for lexicon words of the same type and
    # length (data.augment); needs a typed lexicon. None = the recipe's choice.
    augment_mentions: int | None = None
    # Models trained side by side whose scores are averaged (Tagger.members); None = recipe.
    ensemble: int | None = None
    tag_scheme: str = "bio"
    data_format: str = "auto"
    source_scheme: str = "auto"
    overlaps: str = "outer"  # overlapping spans in span formats: "outer", "first" or "error"
    max_steps: int | None = None
    # Default: 3 epochs, or as many as fit when only --max-minutes is given.
    epochs: float | None = None
    # Wall-clock budget for the whole run (train.budget): stops cleanly with the best model
    # evaluated and exported, the learning-rate schedule fitted to end with the time.
    max_minutes: float | None = None
    eval_every: int = 500
    checkpoint_every: int | None = None
    log_every: int = 50
    batch_size: int = 32
    max_seq_length: int = 128
    learning_rate: float | None = None
    crf_learning_rate: float = 1e-2
    warmup_proportion: float = 0.1
    weight_decay: float = 0.01
    clip_norm: float = 1.0
    classifier_dropout: float | None = None
    # "auto" picks from the hardware and the model (train.runtime.resolve_precision) once the
    # recipe is known; fp32, bf16 and fp16 force a precision.
    precision: str = "auto"
    seed: int = 42
    resume: bool = False
    checkpoint_dir: str | None = None
    max_train_sentences: int | None = None
    export: bool = True
    # Bit-identical reruns and resumes (TF op determinism): "on", "off", or "auto" = on for
    # CPU runs, off when a GPU is visible (some GPU kernels have no deterministic version
    # and raise). True/False, the older spelling, are accepted and mean on/off.
    deterministic: str | bool = "auto"

    def __post_init__(self):
        if self.max_seq_length < 3:
            raise ValueError("max_seq_length must be at least 3 ([CLS], one character, [SEP])")
        if self.batch_size < 1:
            raise ValueError("batch_size must be positive")
        check_precision(self.precision)
        self.deterministic = normalize_determinism(self.deterministic)
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("max_steps must be positive")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError("max_minutes must be positive")
        if self.epochs is not None and self.epochs <= 0:
            raise ValueError("epochs must be positive")
        if self.ensemble is not None and self.ensemble < 1:
            raise ValueError("ensemble must be at least 1 (one model)")
        if self.lexicon_max_len < 2:
            raise ValueError("lexicon_max_len must be at least 2 (single characters are not looked up)")


def log(message: str) -> None:
    print(message, flush=True)


class Trainer:
    """Holds the model, optimizers and data of one run; `run()` trains to the end.

    `jit_compile` XLA-compiles the training step (benchmarks/gpu_throughput.py). XLA compiles
    once per batch shape, so it pays only when batches are padded to one shape; off by default.
    """

    def __init__(self, args: TrainArgs, strategy=None, jit_compile: bool = False):
        # The mixed-precision policy is process-wide and set during set-up: a set-up that
        # fails (a bad checkpoint, say) must not leave it behind for later models.
        self._previous_policy = None
        try:
            self._setup(args, strategy, jit_compile)
        except BaseException:
            if self._previous_policy is not None:
                restore_policy(self._previous_policy)
            raise

    def _setup(self, args: TrainArgs, strategy=None, jit_compile: bool = False):
        import keras
        import tensorflow as tf

        from albert_ner.model.tagger import Tagger
        from albert_ner.text.tokenizer import CharTokenizer
        from albert_ner.train.batching import make_features
        from albert_ner.train.distribute import default_strategy

        self.args = args
        self.started = time.monotonic()  # the time budget counts data loading and model building too
        self.model_dir = ModelDir(args.output_dir)
        self.model_dir.path.mkdir(parents=True, exist_ok=True)
        self.checkpoint_dir = Path(args.checkpoint_dir or self.model_dir.checkpoints)
        self.strategy = strategy or default_strategy()
        self.is_chief = getattr(self.strategy, "is_chief", True)
        if jit_compile and self.strategy.num_replicas_in_sync > 1:
            raise ValueError("jit_compile needs a single replica (one device)")
        self.jit_compile = jit_compile

        keras.utils.set_random_seed(args.seed)
        hardware = detect_hardware()
        determinism = resolve_determinism(args.deterministic, hardware)
        log(f"deterministic ops: {'on' if determinism.value else 'off'} ({determinism.reason})")
        if determinism.value:
            tf.config.experimental.enable_op_determinism()
        self.deterministic_used = determinism.value

        train = read_corpus(args.train_file, format=args.data_format, scheme=args.source_scheme, overlaps=args.overlaps)
        self._report_repairs(train)
        examples = train.examples
        if args.max_train_sentences:
            examples = examples[: args.max_train_sentences]
        self.dev = None
        if args.dev_file:
            dev = read_corpus(args.dev_file, format=args.data_format, scheme=args.source_scheme, overlaps=args.overlaps)
            self._report_repairs(dev)
            self.dev = dev.examples
            unseen = sorted(set(dev.types) - set(train.types))
            if unseen:
                log(f"warning: dev types never seen in training: {', '.join(unseen)}")
        self.tagset = TagSet.from_examples(examples, scheme=args.tag_scheme)
        log(
            f"data: {len(examples)} training sentences, "
            f"{len(self.dev) if self.dev else 0} dev sentences; "
            f"types {', '.join(self.tagset.types)}; {len(self.tagset.tags)} tags ({args.tag_scheme})"
        )

        # Fill the recipe options left unset, in two rounds: the encoder (and lexicon) first,
        # then what depends on the encoder's type (BiLSTM, bigrams, learning rate, dropout);
        # see train.recipe.
        has_checkpoint = bool(args.init_checkpoint)
        self.trained_vocab_size = 0  # see Tagger: set when the lexicon extends the vocabulary
        lexicon_unset = args.lexicon is None
        args = dataclasses.replace(args, **fill_defaults(args, has_checkpoint, None, train_sentences=len(examples)))
        note = missing_lexicon_note(args, has_checkpoint) if lexicon_unset else None
        if note:
            log(note)
        original_sentences = len(examples)
        lexicon = None
        if args.lexicon != NO_LEXICON:
            from albert_ner.text.lexicon import read_lexicon

            lexicon = read_lexicon(args.lexicon)
            if args.augment_mentions:
                from albert_ner.data.augment import replace_mentions

                extra = replace_mentions(examples, lexicon, args.augment_mentions, args.seed)
                log(f"augment: + {len(extra)} sentences with their entities swapped for lexicon "
                    "words of the same type and length")
                examples = examples + extra
        elif args.augment_mentions:
            raise ValueError("--augment-mentions needs a typed --lexicon to draw entity names from")
        elif args.lexicon_profile:
            raise ValueError("--lexicon-profile needs a --lexicon to profile the characters in")
        pretrained, vocab = load_pretrained_and_vocab(
            args.init_checkpoint, args.checkpoint_layout, args.vocab_file,
            [e.text for e in examples], log,
        )
        if lexicon is not None and pretrained is None and not args.vocab_file:
            # A vocabulary built from the training text knows only its characters; the
            # dictionary's words need theirs too, or every word with an unseen character
            # (most names) could never match.
            from albert_ner.text.lexicon import lexicon_characters

            self.trained_vocab_size = len(vocab)
            vocab = vocab.extended(lexicon_characters(lexicon))
            log(f"vocab: + {len(vocab) - self.trained_vocab_size} characters of the lexicon's words "
                "(for word matching only: the model reads them as [UNK])")
        self.tokenizer = CharTokenizer(vocab)
        self.lexicon_classes = ()
        if lexicon is not None:
            from albert_ner.text.lexicon import lexicon_arrays

            lexicon_keys, lexicon_bits, report = lexicon_arrays(lexicon, self.tokenizer, args.lexicon_max_len)
            self.lexicon_classes = lexicon.classes
            log(report)
            lexicon_profile = None
            if args.lexicon_profile:
                from albert_ner.text.lexicon import character_profile

                lexicon_profile = character_profile(lexicon, self.tokenizer)
            if pretrained is not None and pretrained.stack_options:
                raise ValueError(
                    f"--lexicon {args.lexicon} cannot be added to {args.init_checkpoint}: its BiLSTM "
                    "was pretrained without lexicon inputs (pass --lexicon none)"
                )
        self.encoder_config = resolve_encoder_config(args.model_config, pretrained, vocab)
        args = dataclasses.replace(
            args, **fill_defaults(args, pretrained is not None, self.encoder_config.model_type,
                                  pretrained.stack_options if pretrained is not None else None,
                                  train_sentences=original_sentences)
        )
        self.args = args
        self.learning_rate = args.learning_rate
        log(f"recipe: {describe_recipe(args, pretrained is not None)}")
        # Resolved only now: `auto` depends on the model type the recipe settled on. The
        # policy must be in place before the model is built (layers take it then); run()
        # puts the previous one back at the end, since the policy is process-wide.
        precision = resolve_precision(args.precision, self.encoder_config.model_type, hardware)
        self.precision = precision.value
        log(f"precision: {self.precision} ({precision.reason})")
        self._previous_policy = set_precision(self.precision)

        self.features = make_features(examples, self.tokenizer, self.tagset, args.max_seq_length)
        self.lengths = [len(f) for f in self.features]
        self.steps_per_epoch = math.ceil(len(self.features) / args.batch_size)
        if args.max_steps:
            self.total_steps = args.max_steps
        elif args.epochs is None and args.max_minutes:
            # Until the budget has timed a few steps: a generous provisional plan (the
            # schedule is re-fitted to what fits, see train.budget).
            self.total_steps = 1000 * self.steps_per_epoch
        else:
            self.total_steps = max(1, math.ceil((args.epochs or 3.0) * self.steps_per_epoch))
        # Upper bound on the steps; with a time budget total_steps is re-fitted below it.
        self.step_cap = self.total_steps
        real = sum(self.lengths)
        log(
            f"features: {len(self.features)} windows of ≤{args.max_seq_length - 2} characters "
            f"({real} characters); {self.steps_per_epoch} steps/epoch, "
            + ("as many steps as fit the time budget" if args.epochs is None and args.max_minutes
               and not args.max_steps else f"{self.total_steps} steps")
        )

        from albert_ner.train.optimizer import make_optimizer

        known_bigrams = self._known_bigrams(args, pretrained, vocab)
        with self.strategy.scope():
            self.model = Tagger(
                self.encoder_config,
                num_tags=len(self.tagset.tags),
                head=args.head,
                classifier_dropout=args.classifier_dropout,
                cls_id=vocab.cls_id,
                sep_id=vocab.sep_id,
                lstm_units=args.lstm_units,
                bigram_buckets=args.bigram_buckets,
                bigram_size=args.bigram_size,
                lexicon_size=len(lexicon_keys) if lexicon is not None else 0,
                lexicon_max_len=args.lexicon_max_len if lexicon is not None else 0,
                lexicon_classes=self.lexicon_classes,
                lexicon_profile=lexicon is not None and bool(args.lexicon_profile),
                trained_vocab_size=self.trained_vocab_size,
                unk_id=vocab.unk_id,
                unk_dropout=args.unk_dropout,
                members=args.ensemble,
                known_bigrams=len(known_bigrams),
            )
            self.model.set_allowed_transitions(*self.tagset.allowed_transitions())
            self.model.build_variables()
            if lexicon is not None:
                self.model.lexicon.set_entries(lexicon_keys, lexicon_bits, lexicon_profile)
            if len(known_bigrams):
                self.model.known_bigrams.set_keys(known_bigrams)
            if pretrained is not None:
                # Every member of an ensemble starts from the checkpoint; they still differ in
                # their classifiers and in what each hides and drops in training.
                for encoder, bigrams, lstm in self.model.stacks():
                    pretrained.load_into(encoder)
                    if pretrained.stack_options:  # the no-transformer stack pretrained by `pretrain`
                        log(pretrained.load_stack_into(bigrams, lstm))
            warmup = int(args.warmup_proportion * self.total_steps)
            self.optimizer = make_optimizer(
                self.learning_rate, warmup, self.total_steps, args.weight_decay, args.clip_norm,
                name="adamw",
            )
            crf_vars = [v for v in self.model.trainable_variables if v.path.startswith("crf/")]
            self.main_vars = [v for v in self.model.trainable_variables if not v.path.startswith("crf/")]
            self.crf_vars = crf_vars
            self.crf_optimizer = None
            if crf_vars:
                self.crf_optimizer = make_optimizer(
                    args.crf_learning_rate, warmup, self.total_steps, 0.0, args.clip_norm,
                    name="adamw_crf",
                )
                self.crf_optimizer.build(crf_vars)
            self.optimizer.build(self.main_vars)
        n_params = sum(int(np.prod(v.shape)) for v in self.model.trainable_variables)
        log(
            f"model: {self.encoder_config.model_type} "
            f"(hidden {self.encoder_config.hidden_size}, {self.encoder_config.num_hidden_layers} "
            f"layers), head {args.head}, {n_params:,} trainable parameters, "
            f"learning rate {self.learning_rate:g} (CRF {args.crf_learning_rate:g}), "
            f"{self.strategy.num_replicas_in_sync} replica(s), precision {self.precision}"
        )
        self._build_functions()
        self.window = args.max_seq_length - 2
        self.stride = max(1, self.window // 2)

    @staticmethod
    def _report_repairs(corpus) -> None:
        message = corpus.repair_message()
        if message:
            log(f"warning: {message}")

    # ------------------------------------------------------------------ graph functions
    def _build_functions(self) -> None:
        import tensorflow as tf

        model, strategy = self.model, self.strategy
        # fp16 needs loss scaling so small gradients survive (train.loss_scale: its state is
        # mirrored on every replica, like the optimizers'). bf16 has fp32's exponent range:
        # fp32 and bf16 steps are built without any of it.
        self.loss_scale = None
        if self.precision == "fp16":
            from albert_ner.train.loss_scale import DynamicLossScale

            with strategy.scope():
                self.loss_scale = DynamicLossScale()
        loss_scale = self.loss_scale

        def apply_gradients(grads):
            n = len(self.main_vars)
            self.optimizer.apply_gradients(zip(grads[:n], self.main_vars))
            if self.crf_optimizer is not None:
                self.crf_optimizer.apply_gradients(zip(grads[n:], self.crf_vars))

        def step_fn(input_ids, tag_ids, global_batch):
            """The batch's mean loss; fp16: (loss, whether the gradients were applied)."""
            with tf.GradientTape() as tape:
                losses = model.sentence_losses(input_ids, tag_ids, training=True)
                loss = tf.reduce_sum(losses) / tf.cast(global_batch, tf.float32)
                target = loss if loss_scale is None else loss_scale.scale_loss(loss)
            grads = tape.gradient(target, self.main_vars + self.crf_vars)
            if loss_scale is None:
                apply_gradients(grads)
                return loss
            # One scale and one finiteness check for both optimizers, which the same scaled
            # loss feeds: an overflow in either's gradients skips the step for both.
            return loss, loss_scale.apply_if_finite(grads, apply_gradients)

        spec = [
            tf.TensorSpec([None, None], tf.int32),
            tf.TensorSpec([None, None], tf.int32),
            tf.TensorSpec([], tf.int32),
        ]
        if strategy.num_replicas_in_sync == 1:
            self._train_step = tf.function(step_fn, input_signature=spec, jit_compile=self.jit_compile)
        else:
            replicas = strategy.num_replicas_in_sync

            def replica_fn(input_ids, tag_ids, global_batch):
                # Every worker passes the same whole batch; replica r trains on rows r, r+n, ...
                r = tf.distribute.get_replica_context().replica_id_in_sync_group
                return step_fn(input_ids[r::replicas], tag_ids[r::replicas], global_batch)

            # A fixed signature means one trace: per-batch shapes would retrace every step, and
            # under MultiWorkerMirroredStrategy workers tracing at different steps build their
            # collectives in different orders.
            @tf.function(input_signature=spec)
            def distributed_step(input_ids, tag_ids, global_batch):
                results = strategy.run(replica_fn, args=(input_ids, tag_ids, global_batch))
                if loss_scale is None:
                    return strategy.reduce(tf.distribute.ReduceOp.SUM, results, axis=None)
                losses, applied = results  # every replica took the same decision
                return (strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None),
                        strategy.experimental_local_results(applied)[0])

            self._train_step = distributed_step
        if loss_scale is not None:  # the loop takes the loss alone; skipped steps are logged
            from albert_ner.train.loss_scale import reporting_skips

            self._train_step = reporting_skips(self._train_step, loss_scale, log)

        self._predict = tf.function(
            lambda ids, lengths: model.predict_tags(ids, lengths, self.window, self.stride),
            input_signature=[tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None], tf.int32)],
        )

    def _known_bigrams(self, args, pretrained, vocab) -> np.ndarray:
        """Keys of the character bigrams in the training windows (`KnownBigrams`), or none.

        Only for a bigram table trained here: a pretrained one (`pretrain --model-config
        chars`) has learned pairs this data lacks.
        """
        from albert_ner.model.sequence import known_bigram_keys

        if not args.bigram_buckets or (pretrained is not None and pretrained.stack_options):
            return np.zeros([0], np.int64)
        # The ids are what the model reads: a vocabulary extended for the lexicon
        # (Tagger.trained_vocab_size) was built from this very text, so no training id is past it.
        keys = known_bigram_keys([f.input_ids for f in self.features], (vocab.cls_id, vocab.sep_id, vocab.unk_id))
        log(f"bigrams: {len(keys)} distinct character pairs in training; outside training an "
            "unseen pair is read as (character, [UNK])")
        return keys

    def _run_step(self, batch_indices: list[int]) -> float:
        from albert_ner.train.batching import pad_batch

        # Every worker computed the same batch list and passes the whole batch; with several
        # replicas, replica r takes every r-th sentence inside the step (_build_functions).
        replicas = self.strategy.num_replicas_in_sync
        if len(batch_indices) < replicas:  # a tiny last batch: give every replica a sentence
            batch_indices = (batch_indices * replicas)[:replicas]
        ids, tags = pad_batch([self.features[i] for i in batch_indices])
        return float(self._train_step(ids, tags, np.int32(len(batch_indices))))

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict:
        from albert_ner.predict import Predictor, evaluate

        predictor = Predictor(
            lambda ids, lengths: self._predict(ids, lengths).numpy(), self.tokenizer, self.tagset
        )
        return evaluate(predictor, self.dev)

    # ------------------------------------------------------------------ checkpoints
    def _schedules(self) -> list:
        return [opt.schedule for opt in (self.optimizer, self.crf_optimizer) if opt is not None]

    def _fit_schedule(self, budget, state: dict) -> None:
        """Re-fits the learning-rate schedules so that they end when the time budget does."""
        fitted = budget.steps_that_fit(state["step"])
        if fitted is None:
            return
        total = max(min(fitted, self.step_cap), state["step"] + 1)
        if state.get("warmup_steps") is None:  # fixed once, at the first estimate
            state["warmup_steps"] = int(self.args.warmup_proportion * total)
        self.total_steps = total
        for schedule in self._schedules():
            schedule.fit(state["warmup_steps"], total)

    def _optimizers(self) -> dict:
        """The training state a checkpoint saves besides the model, by name (each with a
        `.variables` list): the optimizers and, in fp16 runs only, the loss scale."""
        optimizers = {"main": self.optimizer}
        if self.crf_optimizer is not None:
            optimizers["crf"] = self.crf_optimizer
        if self.loss_scale is not None:
            optimizers["loss_scale"] = self.loss_scale
        return optimizers

    def save_checkpoint(self, state: dict) -> None:
        save_checkpoint(self.checkpoint_dir, self.model, self._optimizers(), state)

    def restore_checkpoint(self) -> dict | None:
        return restore_checkpoint(self.checkpoint_dir, self.model, self._optimizers(), log=log)

    def _checkpoint(self, state: dict, session_start: float) -> None:
        """Records the run's time and schedule length in `state`, then saves a checkpoint."""
        state["wall_seconds"] = time.monotonic() - session_start
        state["total_steps"] = self.total_steps  # where a fitted schedule ends
        self.save_checkpoint(state)

    def _interrupt(self, stop: StopSignals, state: dict, session_start: float, saved_step: int | None) -> NoReturn:
        """After a stop signal: a checkpoint of this very step, one log line, TrainingInterrupted."""
        import tensorflow as tf

        save = lambda: self._checkpoint(state, session_start)  # noqa: E731
        if isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            # The hosts may get the signal at different steps, and agreeing on one would need a
            # collective in the step. Each keeps its last scheduled checkpoint instead: those
            # are written at the same steps on every host, so they resume together.
            save = None
        stop.interrupt(state["step"], self.checkpoint_dir, save, saved_step, log)

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
        md = self.model_dir
        checkpoint_every = args.checkpoint_every or args.eval_every
        state = {"step": 0, "best_f1": -1.0, "best_step": None, "loss_sum": 0.0, "loss_count": 0,
                 "train_seconds": 0.0, "samples_since_eval": 0, "seconds_since_eval": 0.0,
                 "wall_seconds": 0.0, "total_steps": self.total_steps, "warmup_steps": None}
        saved_step = None  # the step of the newest checkpoint on disk
        if args.resume:
            restored = self.restore_checkpoint()
            if restored is None:
                log(f"resume: no checkpoint in {self.checkpoint_dir}, starting from step 0")
            else:
                state = {**state, **restored}
                saved_step = state["step"]
                log(f"resume: continuing from step {state['step']} ({self.checkpoint_dir})")
                self._truncate_metrics(state["step"])
                if args.max_minutes and state["warmup_steps"] is not None:
                    self.total_steps = state["total_steps"]
                    for schedule in self._schedules():
                        schedule.fit(state["warmup_steps"], self.total_steps)
        elif self.is_chief:
            md.metrics.unlink(missing_ok=True)
        if self.is_chief:
            self._write_run_files()

        budget = None
        if args.max_minutes:
            # Setup time of this process counts; so does the time earlier sessions spent.
            budget = TimeBudget(
                args.max_minutes,
                already_spent=state["wall_seconds"] + (time.monotonic() - self.started),
            )
            log(f"time budget: {args.max_minutes:g} min; the schedule is fitted to end with it")
        session_start = time.monotonic() - state["wall_seconds"]
        step = start_step = state["step"]
        batches, batches_epoch = None, None
        started = time.time()
        stopped_by_budget = False
        with StopSignals() as stop:  # SIGTERM: finish the step, checkpoint it, stop
            while step < self.total_steps:
                if budget is not None and budget.should_stop():
                    stopped_by_budget = True
                    log(f"time budget: {budget.elapsed() / 60:.1f} of {args.max_minutes:g} min used, "
                        f"stopping at step {step}")
                    break
                epoch, position = divmod(step, self.steps_per_epoch)
                if batches_epoch != epoch:
                    batches = epoch_batches(self.lengths, args.batch_size, args.seed, epoch)
                    batches_epoch = epoch
                t0 = time.time()
                loss = self._run_step(batches[position])
                elapsed = time.time() - t0
                if not math.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss} at step {step + 1}; try a lower --learning-rate")
                step += 1
                state["step"] = step
                state["loss_sum"] += loss
                state["loss_count"] += 1
                state["train_seconds"] += elapsed
                state["samples_since_eval"] += len(batches[position])
                state["seconds_since_eval"] += elapsed
                if budget is not None:
                    budget.record_step(elapsed)
                    self._fit_schedule(budget, state)
                if step % args.log_every == 0 or step == self.total_steps:
                    rate = state["samples_since_eval"] / max(state["seconds_since_eval"], 1e-9)
                    per_step = (time.time() - started) / max(step - start_step, 1)
                    eta = budget.remaining() if budget is not None else per_step * (self.total_steps - step)
                    log(
                        f"step {step}/{'≈' if budget is not None else ''}{self.total_steps} "
                        f"({100 * step / self.total_steps:.0f}%) "
                        f"epoch {step / self.steps_per_epoch:.2f} "
                        f"loss {state['loss_sum'] / max(state['loss_count'], 1):.4f} "
                        f"{rate:.1f} samples/s ETA {format_eta(eta)}"
                    )
                if step % args.eval_every == 0 or step == self.total_steps:
                    t0 = time.time()
                    self._evaluate_and_record(state)
                    if budget is not None:
                        budget.record_eval(time.time() - t0)
                if step % checkpoint_every == 0 or step == self.total_steps:
                    self._checkpoint(state, session_start)
                    saved_step = step
                if stop.received:
                    self._interrupt(stop, state, session_start, saved_step)
            if stopped_by_budget and (state["loss_count"] or state["best_step"] is None):
                # Steps since the last evaluation: evaluate them so the best model can be theirs
                # (and a budget that ran out before any evaluation still leaves a model).
                if state["step"] == 0:
                    log("warning: the time budget ran out before the first step; the model is untrained")
                self._evaluate_and_record(state)
                self._checkpoint(state, session_start)
                saved_step = state["step"]
            if stop.received:  # after the last step: its checkpoint is written, stop before the export
                self._interrupt(stop, state, session_start, saved_step)
        return self._finish(state)

    def _evaluate_and_record(self, state: dict) -> None:
        step = state["step"]
        record = {
            "step": step,
            "epoch": round(step / self.steps_per_epoch, 4),
            "loss": state["loss_sum"] / max(state["loss_count"], 1),
        }
        if self.dev:
            t0 = time.time()
            scores = self.evaluate()
            record.update(scores)
            eval_seconds = time.time() - t0
        else:
            eval_seconds = 0.0
        record["samples_per_sec"] = state["samples_since_eval"] / max(state["seconds_since_eval"], 1e-9)
        record["wall_time"] = state["train_seconds"]
        record["eval_seconds"] = eval_seconds
        state["loss_sum"], state["loss_count"] = 0.0, 0
        state["samples_since_eval"], state["seconds_since_eval"] = 0, 0.0

        # The article's log format; SageMaker metric definitions regex these lines.
        log(f"***** Eval results at step {step} *****")
        for key in ("eval_f", "eval_precision", "eval_recall", "entity_f1", "entity_precision",
                    "entity_recall", "loss"):
            if key in record:
                log(f"{key} = {record[key]:.6g}")
        log(f"global_step = {step}")

        f1 = record.get("entity_f1", -record["loss"])
        if self.is_chief:
            append_jsonl(self.model_dir.metrics, record)
            if state["best_step"] is None or f1 > state["best_f1"]:
                state["best_f1"], state["best_step"] = f1, step
                save_weights(self.model, self.model_dir.weights)
                log(f"new best model at step {step} (dev entity F1 {f1:.4f})" if self.dev else
                    f"model saved at step {step}")

    def _truncate_metrics(self, step: int) -> None:
        """Drops metrics lines written after the checkpoint a resumed run restarts from."""
        records = [r for r in self.model_dir.read_metrics() if r["step"] <= step]
        if self.is_chief:
            rewrite_jsonl(self.model_dir.metrics, records)

    def _write_run_files(self) -> None:
        md = self.model_dir
        vocab = self.tokenizer.vocab
        with replacing(md.vocab, sum(len(t.encode("utf-8")) + 1 for t in vocab.tokens)) as tmp:
            vocab.save(tmp)
        write_json(md.labels, self.tagset.to_json())
        write_json(md.config, {
            "encoder": self.encoder_config.to_dict(),
            "head": self.args.head,
            "num_tags": len(self.tagset.tags),
            "max_seq_length": self.args.max_seq_length,
            "classifier_dropout": self.args.classifier_dropout,
            "lstm_units": self.args.lstm_units,
            "bigram_buckets": self.args.bigram_buckets,
            "bigram_size": self.args.bigram_size,
            "lexicon_size": self.model.lexicon.size if self.model.lexicon is not None else 0,
            "lexicon_max_len": self.model.lexicon.max_len if self.model.lexicon is not None else 0,
            "lexicon_classes": list(self.lexicon_classes),
            "lexicon_profile": self.model.lexicon is not None and self.model.lexicon.profile_vocab > 0,
            "trained_vocab_size": self.trained_vocab_size,
            "unk_dropout": self.args.unk_dropout,
            "members": self.model.members,
            "known_bigrams": self.model.known_bigrams.size if self.model.known_bigrams is not None else 0,
        })
        args = dataclasses.asdict(self.args)
        args["learning_rate_used"] = self.learning_rate
        args["precision_used"] = self.precision  # what `auto` (or the option) came to
        args["deterministic_used"] = self.deterministic_used
        write_json(md.training_args, args)

    def _finish(self, state: dict) -> dict:
        md = self.model_dir
        records = md.read_metrics()
        final = records[-1] if records else {}
        if self.is_chief:
            final = dict(final, best_step=state["best_step"], best_entity_f1=state["best_f1"])
            write_json(md.final_metrics, final)
            if self.args.export:
                self._export()
                log(f"exported SavedModel (best step {state['best_step']}, float32) to {md.saved_model}")
        log(f"done: {state['step']} steps in {format_eta(state['train_seconds'])} of training; model dir {md.path}")
        return final


    def _export(self) -> None:
        """Writes the SavedModel of the best weights, computing in float32 whatever the training
        precision.

        Mixed precision only speeds up training (the variables are float32 anyway). A SavedModel
        traced under a bf16 policy would compute in bf16 wherever it is served: about 2x slower
        on a CPU without AVX512-BF16, and on GPUs before compute capability 8.0. A mixed-precision
        run therefore rebuilds the model from weights.npz under float32 — the same SavedModel
        `albert-ner export` writes.
        """
        from albert_ner.export import export_model_dir, export_saved_model

        md = self.model_dir
        if self.precision == "fp32":
            load_weights(self.model, md.weights)
            export_saved_model(self.model, md, self.tokenizer, self.tagset)
            return
        previous = set_precision("fp32")
        try:
            export_model_dir(md.path)
        finally:
            restore_policy(previous)


def run_training(args: TrainArgs, strategy=None) -> dict:
    """Trains, evaluates, checkpoints and exports; returns the final metrics record."""
    return Trainer(args, strategy=strategy).run()
