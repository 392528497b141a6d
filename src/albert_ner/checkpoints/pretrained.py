"""`resolve_pretrained`: from `--init-checkpoint SPEC` to config + vocab + weights for `Encoder`.

SPEC may be
  * a TF1 checkpoint prefix (`dir/albert_model.ckpt`, the files are `*.index` + `*.data-*`);
  * a directory as vendors publish it: brightmart (`albert_model.ckpt.*`,
    `albert_config_<size>.json` or `albert_config.json`, `vocab.txt`), Google BERT
    (`bert_model.ckpt.*`, `bert_config.json`, `vocab.txt`), Hugging Face (`config.json` +
    `model.safetensors` / `model.safetensors.index.json` / `pytorch_model.bin`, `vocab.txt`);
    an unpacked archive with a single top-level folder is entered automatically;
  * a known model name (`download.KNOWN_MODELS`), fetched into the download cache;
  * a directory written by `albert-ner pretrain` (`native`: encoder_config.json,
    encoder_weights.npz, vocab.txt);
  * an archive of any of these (`.tar.gz`, `.tgz`, `.tar`, `.zip`), or a directory holding just
    one, such as a SageMaker channel that delivers a pretraining job's `model.tar.gz`:
    unpacked once into the download cache.

The layout is detected from the variable names (file names lie: brightmart's
`albert_tiny_zh_google.zip` also holds an `albert_model.ckpt`), and it fixes the config
fields the JSON leaves implicit. Loading checks every encoder weight (present, right shape),
the vocabulary (lines = embedding rows) and leftover encoder variables, and raises
`CheckpointError` naming the variable and the expected vs found shape before anything is
assigned.

Example:
  pretrained = resolve_pretrained("albert_base_zh_additional_36k_steps")
  tagger = Tagger(pretrained.config, num_tags=7); tagger.build_variables()
  pretrained.load_into(tagger.encoder)   # prints the loading report
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import re
import textwrap
from pathlib import Path

import numpy as np

from albert_ner.checkpoints import layouts, native
from albert_ner.checkpoints.readers import (
    CheckpointError,
    SafetensorsReader,
    TF1Reader,
    TorchBinReader,
)
from albert_ner.model.config import EncoderConfig

HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
# Vendor config names in order of preference when a directory holds several.
_TF1_CONFIG_PATTERNS = ("albert_config.json", "bert_config.json", "albert_config*.json",
                        "bert_config*.json", "config.json")


@dataclasses.dataclass
class LoadReport:
    """What `Pretrained.load_into` did; `str(report)` is the one-screen summary."""

    source: str
    layout: str
    loaded: list[str]  # checkpoint names copied into the encoder
    ignored: dict[str, list[str]]  # category -> checkpoint names skipped on purpose
    new: str = "the tagging head and CRF (classifier/*, crf/*)"

    def __str__(self) -> str:
        lines = [f"init checkpoint {self.source} (layout {self.layout}):"]
        lines += textwrap.wrap(
            f"loaded {len(self.loaded)} encoder variables: {layouts.abbreviate(self.loaded, 10)}",
            width=108, initial_indent="  ", subsequent_indent="      ", break_on_hyphens=False,
        )
        total = sum(len(v) for v in self.ignored.values())
        lines.append(f"  ignored {total} variables:" + ("" if total else " none"))
        for category, names in self.ignored.items():
            if category == "optimizer slots":  # one per weight: list the slot kinds only
                kinds = collections.Counter("*/" + re.split(r"[/.]", n)[-1] for n in names)
                listing = ", ".join(f"{kind} ({count})" for kind, count in kinds.items())
            else:
                listing = layouts.abbreviate(names, 4)
            lines += textwrap.wrap(f"{len(names)} {category}: {listing}", width=108,
                                   initial_indent="    ", subsequent_indent="      ",
                                   break_on_hyphens=False)
        lines.append(f"  newly initialised: {self.new} only")
        return "\n".join(lines)


@dataclasses.dataclass
class Pretrained:
    """A resolved checkpoint: its encoder config, vocab file and weights.

    Attributes:
      config: the EncoderConfig (vendor JSON + detected layout + checkpoint shapes).
      vocab_file: path of the vocab.txt that belongs to the checkpoint.
      layout: one of `layouts.LAYOUTS`.
      detected_layout: what the variable names say (None: unrecognised).
      reader: a reader over the weights (`shapes`, `get(name)`).
    """

    config: EncoderConfig
    vocab_file: Path
    layout: str
    reader: object
    detected_layout: str | None = None  # differs from `layout` when the user forced one
    # An albert-ner directory of the no-transformer stack: its BiLSTM/bigram options
    # ({"lstm_units", "bigram_buckets", "bigram_size"}); {} for every other checkpoint.
    stack_options: dict = dataclasses.field(default_factory=dict)

    @property
    def source(self) -> str:
        return self.reader.source

    def plan(self, encoder) -> list[tuple[object, str, bool]]:
        """Checks the checkpoint against a built encoder; [(variable, name, transpose)].

        Raises:
          CheckpointError: on a missing encoder variable, a shape mismatch, or a checkpoint
            variable inside the encoder's scope that this encoder has no place for.
        """
        targets = layouts.encoder_variables(encoder)
        shapes = self.reader.shapes
        names = layouts.checkpoint_names(self.layout, targets, shapes)
        # Shape mismatches first: they say the most about a wrong layout or config (a 312-wide
        # LayerNorm where 128 is expected is brightmart/albert_zh issue 137).
        mismatched, missing, plan = [], [], []
        for slot, variable in targets.items():
            name, transpose = names[slot]
            expected = tuple(int(d) for d in variable.shape)
            if name not in shapes:
                missing.append(
                    f"encoder variable {name} (shape {expected}) is missing from {self.source}"
                )
                continue
            found = shapes[name][::-1] if transpose else shapes[name]
            if tuple(found) != expected:
                what = " (transposed from a [out, in] Linear weight)" if transpose else ""
                mismatched.append(
                    f"checkpoint variable {name} has shape {tuple(found)}{what} but the "
                    f"{self.config.model_type} encoder (layout {self.layout}) expects {expected}"
                )
                continue
            plan.append((variable, name, transpose))
        problems = mismatched + missing
        used = {name for name, _ in names.values()}
        prefix = layouts.hf_prefix(shapes)
        for name in shapes:
            if (name not in used and layouts.ignored_category(name) is None
                    and layouts.in_encoder_scope(self.layout, name, prefix)):
                problems.append(
                    f"checkpoint variable {name} {shapes[name]} has no place in a "
                    f"{self.config.num_hidden_layers}-layer {self.config.model_type} encoder "
                    f"(layout {self.layout}); is the layout or config wrong?"
                )
        if problems:
            more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
            hint = ""
            if self.detected_layout and self.detected_layout != self.layout:
                hint = (f"; its variable names look like layout {self.detected_layout}, not the "
                        f"forced {self.layout}")
            raise CheckpointError(problems[0] + more + hint)
        return plan

    def load_into(self, encoder, verbose: bool = True, new: str | None = None) -> LoadReport:
        """Copies the checkpoint into `encoder`, all or nothing, and reports what happened.

        Args:
          encoder: an `Encoder` built from `self.config` (or a config of the same shapes);
            built here on a dummy batch if its variables do not exist yet.
          verbose: print the loading report.
          new: what the caller initialises itself, for the report (default: the tagging
            head and CRF).
        Returns:
          the LoadReport.
        """
        if not encoder.built:
            import tensorflow as tf

            encoder(tf.ones([1, 3], tf.int32))
        plan = self.plan(encoder)
        values = []
        for variable, name, transpose in plan:  # read everything before assigning anything
            value = self.reader.get(name)
            values.append(np.ascontiguousarray(value.T if transpose else value))
        for (variable, _, _), value in zip(plan, values):
            variable.assign(value.astype(variable.dtype))
        loaded = [name for _, name, _ in plan]
        loaded_set = set(loaded)
        ignored: dict[str, list[str]] = {}
        for name in self.reader.shapes:
            if name not in loaded_set:
                ignored.setdefault(layouts.ignored_category(name) or "other (not encoder)", []).append(name)
        report = LoadReport(self.source, self.layout, loaded, ignored)
        if new is not None:
            report.new = new
        if verbose:
            print(report, flush=True)
        return report


    def load_stack_into(self, bigrams, lstm) -> str:
        """Copies the checkpoint's bigram and BiLSTM layers (`stack_options`) into built layers.

        Args:
          bigrams, lstm: the tagger's (or masked LM's) layers, None where it has none; they
            must be the ones `stack_options` describes.
        Returns:
          one line for the log.
        Raises:
          CheckpointError: a layer the checkpoint has and the model lacks (or the reverse), or
            a shape mismatch — all before anything is assigned.
        """
        targets = layouts.stack_variables(bigrams, lstm)
        stored = {n for n in self.reader.shapes if n.startswith(("bigrams/", "bilstm/"))}
        problems = [f"{n} {self.reader.shapes[n]} has no layer to go into (the model has "
                    f"no such bigram/BiLSTM layer)" for n in sorted(stored - set(targets))]
        for slot, variable in targets.items():
            expected = tuple(int(d) for d in variable.shape)
            if slot not in stored:
                problems.append(f"{slot} (shape {expected}) is missing from {self.source}")
            elif tuple(self.reader.shapes[slot]) != expected:
                problems.append(f"{slot} has shape {tuple(self.reader.shapes[slot])} in {self.source} "
                                f"but the model expects {expected}")
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise CheckpointError(
                f"{problems[0]}{more}; the checkpoint was written with {self.stack_options or 'no bigram/BiLSTM layers'}"
            )
        values = [self.reader.get(slot) for slot in targets]
        for variable, value in zip(targets.values(), values):
            variable.assign(value.astype(variable.dtype))
        return f"bigram/BiLSTM layers: loaded {len(targets)} variables from {self.source}" if targets else ""

    def load_mlm_head(self, head) -> str:
        """Copies the checkpoint's masked-LM head into `head` when it has a complete one.

        Continued pretraining starts better from the vendor's own head than from a random
        one. A checkpoint without a complete head (fine-tuning exports, partial dumps) or with
        other shapes leaves `head` as initialised.

        Args:
          head: a built `model.mlm.MaskedLMHead`.
        Returns:
          one line for the log saying which happened.
        """
        targets = layouts.mlm_head_variables(head)
        names = layouts.mlm_head_names(self.layout, self.reader.shapes)
        plan = []
        for slot, variable in targets.items():
            name, transpose = names[slot]
            shape = self.reader.shapes.get(name)
            found = None if shape is None else tuple(shape[::-1] if transpose else shape)
            if found != tuple(int(d) for d in variable.shape):
                why = "missing" if shape is None else f"shape {found}, expected {tuple(variable.shape)}"
                return f"masked-LM head: newly initialised ({name} {why} in {self.source})"
            plan.append((variable, name, transpose))
        values = [self.reader.get(name) for _, name, _ in plan]
        for (variable, _, transpose), value in zip(plan, values):
            variable.assign(np.ascontiguousarray(value.T if transpose else value).astype(variable.dtype))
        return f"masked-LM head: loaded {len(plan)} variables ({layouts.abbreviate([n for _, n, _ in plan], 5)})"


def resolve_pretrained(spec: str | Path, layout: str | None = None, cache_dir=None) -> Pretrained:
    """Finds checkpoint, config and vocab for `--init-checkpoint SPEC` (see module docstring).

    Args:
      spec: checkpoint prefix, directory or known model name.
      layout: force a layout (`--checkpoint-layout`) instead of detecting it.
      cache_dir: download cache (default `$ALBERT_NER_CACHE` or ~/.cache/albert_ner).
    Returns:
      a Pretrained ready for `load_into`.
    Raises:
      CheckpointError: with one sentence naming the file or variable at fault.
    """
    from albert_ner.checkpoints import download

    if layout is not None and layout not in layouts.LAYOUTS:
        raise CheckpointError(f"--checkpoint-layout must be one of {', '.join(layouts.LAYOUTS)}, got {layout!r}")
    path = Path(spec).expanduser()
    if not path.exists() and not Path(str(path) + ".index").exists():
        if str(spec) in download.KNOWN_MODELS:
            path = download.fetch_model(str(spec), cache_dir=cache_dir)
        else:
            raise CheckpointError(
                f"--init-checkpoint {spec!r} is neither a checkpoint prefix, a directory, nor a "
                f"known model name ({', '.join(download.KNOWN_MODELS)})"
            )
    path = _unpacked_archive(path, cache_dir)
    reader, directory = _open_weights(path)
    detected = layouts.detect_layout(reader.shapes)
    chosen = layout or detected
    if chosen is None:
        sample = ", ".join(sorted(reader.shapes)[:5])
        raise CheckpointError(
            f"cannot tell the layout of {reader.source} from its variable names ({sample}, ...); "
            f"pass --checkpoint-layout ({', '.join(layouts.LAYOUTS)})"
        )
    config_file = _find_config(directory, chosen)
    config = _build_config(config_file, chosen, reader)
    vocab_file = directory / "vocab.txt"
    if not vocab_file.is_file():
        raise CheckpointError(f"no vocab.txt next to the checkpoint in {directory}; the vocabulary must come with the weights")
    _check_vocab(vocab_file, config, reader.source)
    stack = native.read_stack_options(directory) if chosen == "albert-ner" else {}
    return Pretrained(config, vocab_file, chosen, reader, detected_layout=detected, stack_options=stack)


def _unpacked_archive(path: Path, cache_dir) -> Path:
    """An archive (or a directory holding only one) → the directory it unpacks to; else `path`.

    The unpacked copy lives in CACHE/unpacked/<name>-<key>, keyed by the archive's path, size
    and modification time, so a second run reuses it.
    """
    from albert_ner.checkpoints import download

    if path.is_dir():
        entries = [p for p in path.iterdir() if not p.name.startswith(".")]
        if len(entries) == 1 and entries[0].is_file() and entries[0].name.endswith(ARCHIVE_SUFFIXES):
            path = entries[0]
    if not (path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES)):
        return path
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = download.cache_root(cache_dir) / "unpacked" / f"{path.name}-{key}"
    if not (target / ".complete").exists():
        download._unpack(path, target)
    return target


def _open_weights(path: Path):
    """(reader, directory holding config and vocab) for a prefix or a directory."""
    if not path.is_dir():
        return TF1Reader(path), path.parent
    if native.is_encoder_dir(path):
        return native.NpzReader(path / native.WEIGHTS_FILE), path
    directory = _enter_single_subdir(path)
    if native.is_encoder_dir(directory):
        return native.NpzReader(directory / native.WEIGHTS_FILE), directory
    for name in HF_WEIGHT_FILES:
        if (directory / name).is_file():
            if name.endswith(".bin"):
                return TorchBinReader(directory / name), directory
            _require_safetensors(directory / name)
            return SafetensorsReader(directory / name), directory
    return TF1Reader(_find_tf1_prefix(directory)), directory


def _require_safetensors(path: Path) -> None:
    """`safetensors` is no dependency of the package (TF1 checkpoints need none): without it a
    Hugging Face checkpoint gets one sentence with the install command, not an ImportError
    traceback from deep inside the reader."""
    try:
        from safetensors import safe_open  # noqa: F401
    except ImportError:
        raise CheckpointError(
            f"{path} is a Hugging Face safetensors checkpoint and reading it needs the safetensors "
            f"package, which is not installed: pip install safetensors"
        ) from None


def _enter_single_subdir(path: Path) -> Path:
    """Archives unpack to `<dir>/<model>/...`: descend while a directory has one folder only."""
    while True:
        entries = [p for p in path.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
        if len(entries) == 1 and entries[0].is_dir():
            path = entries[0]
        else:
            return path


def _find_tf1_prefix(directory: Path) -> Path:
    indexes = sorted(directory.glob("*.index"))
    if not indexes:
        raise CheckpointError(
            f"{directory} holds no checkpoint: expected *.ckpt.index + *.ckpt.data-* (TF1) or "
            f"config.json + {' / '.join(HF_WEIGHT_FILES)} (Hugging Face)"
        )
    prefixes = [p.with_suffix("") for p in indexes]
    if len(prefixes) == 1:
        return prefixes[0]
    state = directory / "checkpoint"  # TF1's bookkeeping file names the latest checkpoint
    if state.is_file():
        match = re.search(r'^model_checkpoint_path:\s*"(.+)"', state.read_text(encoding="utf-8"), re.M)
        if match:
            return directory / Path(match.group(1)).name
    for preferred in ("albert_model.ckpt", "bert_model.ckpt"):
        if directory / preferred in prefixes:
            return directory / preferred
    names = ", ".join(p.name for p in prefixes)
    raise CheckpointError(f"{directory} holds several checkpoints ({names}); pass one prefix as --init-checkpoint")


def _find_config(directory: Path, layout: str) -> Path:
    if layout == "albert-ner":
        candidates = [directory / native.CONFIG_FILE] if (directory / native.CONFIG_FILE).is_file() else []
    elif layout.startswith("hf-"):
        candidates = [directory / "config.json"] if (directory / "config.json").is_file() else []
    else:
        candidates = []
        for pattern in _TF1_CONFIG_PATTERNS:
            for file in sorted(directory.glob(pattern)):
                if file not in candidates:
                    candidates.append(file)
    if not candidates:
        wanted = {"albert-ner": native.CONFIG_FILE}.get(
            layout, "config.json" if layout.startswith("hf-") else "albert_config*.json or bert_config.json")
        raise CheckpointError(f"no {wanted} next to the checkpoint in {directory}; the encoder config must come with the weights")
    exact = [c for c in candidates
             if c.name in ("albert_config.json", "bert_config.json", "config.json", native.CONFIG_FILE)]
    if len(candidates) > 1 and not exact:
        names = ", ".join(c.name for c in candidates)
        raise CheckpointError(f"{directory} holds several config files ({names}); keep only the one that belongs to the checkpoint")
    return (exact or candidates)[0]


def _build_config(config_file: Path, layout: str, reader) -> EncoderConfig:
    try:
        values = json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{config_file}:{err.lineno}: not valid JSON ({err.msg})") from None
    if layout != "albert-ner":  # our own config states these; vendor JSONs leave them implicit
        values = {k: v for k, v in values.items() if k not in ("model_type", "embedding_layout")}
    values.update(layouts.LAYOUT_FIELDS[layout])
    if layout.startswith("hf-"):
        # Hugging Face's "gelu" is the exact erf form ("gelu_new" is the tanh one).
        values["gelu_approximate"] = values.get("hidden_act", "gelu") != "gelu"
        values.setdefault("hidden_act", "gelu_new" if layout == "hf-albert" else "gelu")
    elif layout != "albert-ner":
        values["gelu_approximate"] = True  # TF1 code computes "gelu" with tanh
    values.setdefault("ln_type", "postln")
    rows = _embedding_rows(reader, layout)
    if rows is not None and values.get("vocab_size") not in (None, rows):
        raise CheckpointError(
            f"{config_file} says vocab_size {values['vocab_size']} but the checkpoint's word "
            f"embeddings have {rows} rows"
        )
    if rows is not None:
        values["vocab_size"] = rows
    try:
        return EncoderConfig.from_dict(values, source=str(config_file))
    except ValueError as err:
        raise CheckpointError(str(err)) from None


def _embedding_rows(reader, layout: str) -> int | None:
    if layout == "albert-ner":
        name = "embeddings/word_embeddings"
    elif layout.startswith("hf-"):
        name = layouts.hf_prefix(reader.shapes) + "embeddings.word_embeddings.weight"
    else:
        name = "bert/embeddings/word_embeddings"
    shape = reader.shapes.get(name)
    return int(shape[0]) if shape else None


def _check_vocab(vocab_file: Path, config: EncoderConfig, source: str) -> None:
    with open(vocab_file, encoding="utf-8", newline="") as fh:
        lines = fh.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) != config.vocab_size:
        raise CheckpointError(
            f"{vocab_file} has {len(lines)} lines but the word embeddings of {source} have "
            f"{config.vocab_size} rows; use the vocab.txt that was published with the checkpoint"
        )
