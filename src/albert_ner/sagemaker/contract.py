"""The SageMaker training contract: what a job container finds, and what it must leave.

Inside a training job SageMaker lays out (root `/opt/ml`, overridable with the environment
variable SAGEMAKER_BASE_DIR so tests and the local runner can use a temporary tree):

  input/config/hyperparameters.json   {"name": "value", ...} — every value is a string
  input/config/inputdataconfig.json   {"training": {...}, "validation": {...}}
  input/config/resourceconfig.json    {"current_host": "algo-1", "hosts": ["algo-1", ...]}
  input/data/<channel>/               the channel's files (a directory per channel)
  model/                              → model.tar.gz (here: a whole model directory)
  output/data/                        → output.tar.gz (metrics copy, log, test scores)
  output/failure                      one line: why the job failed (shown as FailureReason)
  checkpoints/                        synced with S3 for spot training (CheckpointConfig)

Script mode (BYOS) adds SM_* variables (SM_MODEL_DIR, SM_CHANNEL_TRAINING, SM_HPS, SM_HOSTS,
SM_CURRENT_HOST, ...) and passes the hyperparameters again as `--key value` arguments; both
routes end in `job.run_job()`, which maps everything onto one `TrainArgs` with `plan_job()`
here and calls the training loop. Hyperparameter names are the `albert-ner train` options
with underscores; the 2020 article's own names (task_name, do_train, data_dir,
train_batch_size, ...) work unchanged.

Pretraining (`albert-ner pretrain`) runs through the same entrypoints: hyperparameter
`task=pretrain`, or a `pretraining` channel of unlabelled text, makes `plan_pretraining()` map
the job onto `PretrainArgs` (names = the `albert-ner pretrain` options with underscores) and
the encoder directory is written to /opt/ml/model, ready for `train --init-checkpoint`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path

DEFAULT_BASE_DIR = "/opt/ml"
ENV_BASE_DIR = "SAGEMAKER_BASE_DIR"
# Multi-node: SageMaker hosts reach each other by name; workers listen on this port. Tests
# (two "hosts" on 127.0.0.1) map each host to its own address with ENV_WORKER_ADDRESSES.
DEFAULT_WORKER_PORT = 2222
ENV_WORKER_PORT = "ALBERT_NER_WORKER_PORT"
ENV_WORKER_ADDRESSES = "ALBERT_NER_WORKER_ADDRESSES"  # JSON {"algo-1": "127.0.0.1:40001", ...}

# The article's hyperparameters (BERT's run_classifier-style flags) → TrainArgs fields.
ARTICLE_RENAMES = {
    "train_batch_size": "batch_size",
    "num_train_epochs": "epochs",
    "bert_config_file": "model_config",
    "save_checkpoints_steps": "checkpoint_every",
}
# Job-level switches that are not TrainArgs fields.
JOB_KEYS = {"task_name", "do_train", "do_eval", "do_predict", "data_dir", "task"}
# `task`: what the job does; "train" (a tagger) or "pretrain" (masked-LM pretraining).
TASKS = ("train", "pretrain")
PRETRAINING_CHANNEL = "pretraining"
# Accepted and ignored: TPU/Estimator knobs of the original script, and what the platform
# itself adds in script mode (`model_dir` is the S3 model location; we write SM_MODEL_DIR).
IGNORED_KEYS = {"do_lower_case", "eval_batch_size", "predict_batch_size", "use_tpu",
                "iterations_per_loop", "model_dir"}
# TrainArgs fields that hold paths to look up in the code directory or the channels.
PATH_FIELDS = ("vocab_file", "model_config", "init_checkpoint", "lexicon")
# Values of path fields that name something built in rather than a file.
BUILT_IN_VALUES = {"lexicon": {"jieba", "none"}}

TRAIN_NAMES = ("train",)
DEV_NAMES = ("dev", "validation", "valid", "val", "eval")
TEST_NAMES = ("test",)


class ContractError(ValueError):
    """A job set up wrongly (hyperparameters, channels, config files): one line, names the key."""


# ---------------------------------------------------------------------------- the tree
@dataclasses.dataclass(frozen=True)
class JobPaths:
    """Where a job's files are (the `/opt/ml` tree, or its SAGEMAKER_BASE_DIR stand-in)."""

    base: Path
    model: Path
    output: Path
    output_data: Path
    checkpoints: Path

    config_dir = property(lambda self: self.base / "input" / "config")
    data_dir = property(lambda self: self.base / "input" / "data")
    code_dir = property(lambda self: self.base / "code")
    failure = property(lambda self: self.output / "failure")

    @classmethod
    def from_environ(cls, environ=None) -> "JobPaths":
        env = os.environ if environ is None else environ
        base = Path(env.get(ENV_BASE_DIR, DEFAULT_BASE_DIR))
        output = Path(env.get("SM_OUTPUT_DIR", base / "output"))
        return cls(
            base=base,
            model=Path(env.get("SM_MODEL_DIR", base / "model")),
            output=output,
            output_data=Path(env.get("SM_OUTPUT_DATA_DIR", output / "data")),
            checkpoints=base / "checkpoints",
        )

    def remap(self, value: str) -> Path:
        """Maps an absolute `/opt/ml/...` path onto this tree (identity on a real job)."""
        path = Path(value)
        try:
            return self.base / path.relative_to(DEFAULT_BASE_DIR)
        except ValueError:
            return path


def _read_json(path: Path, default):
    """A config file's JSON, `default` when absent; malformed → one line naming the file."""
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ContractError(f"{path}: not readable JSON ({err})") from None


def _env_json(environ, name: str, default):
    if name not in environ:
        return default
    try:
        return json.loads(environ[name])
    except json.JSONDecodeError:
        raise ContractError(f"environment variable {name} is not valid JSON") from None


@dataclasses.dataclass
class JobEnvironment:
    """Everything a job was given: paths, raw hyperparameters, channels and hosts."""

    paths: JobPaths
    hyperparameters: dict
    channels: dict  # name → Path
    hosts: list
    current_host: str
    num_gpus: int = 0

    @property
    def is_chief(self) -> bool:
        # Worker 0 of the TF_CONFIG built below: the same rule as distribute.default_strategy.
        return self.hosts.index(self.current_host) == 0

    @classmethod
    def load(cls, environ=None, cli_hyperparameters: dict | None = None) -> "JobEnvironment":
        """Reads the config files, then the SM_* variables and CLI arguments that refine them."""
        env = os.environ if environ is None else environ
        paths = JobPaths.from_environ(env)

        hyperparameters = _read_json(paths.config_dir / "hyperparameters.json", None)
        if hyperparameters is None:
            hyperparameters = _env_json(env, "SM_HPS", {})
        if not isinstance(hyperparameters, dict):
            raise ContractError(f"{paths.config_dir / 'hyperparameters.json'}: expected a JSON object")
        hyperparameters = dict(hyperparameters, **(cli_hyperparameters or {}))

        declared = _read_json(paths.config_dir / "inputdataconfig.json", {})
        names = set(declared) | set(_env_json(env, "SM_CHANNELS", []))
        if paths.data_dir.is_dir():
            names |= {p.name for p in paths.data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}
        names.discard("code")  # script mode's source dir is delivered as a channel named code
        names.discard("sm_drivers")
        channels = {}
        for name in sorted(names):
            path = Path(env.get(f"SM_CHANNEL_{name.upper()}", paths.data_dir / name))
            if not path.is_dir():
                raise ContractError(f"channel {name!r} is declared but {path} is not a directory")
            channels[name] = path

        resources = _read_json(paths.config_dir / "resourceconfig.json", {})
        hosts = resources.get("hosts") or _env_json(env, "SM_HOSTS", None) or ["algo-1"]
        current = resources.get("current_host") or env.get("SM_CURRENT_HOST") or hosts[0]
        hosts = sorted(hosts)
        if current not in hosts:
            raise ContractError(f"resourceconfig: current_host {current!r} is not in hosts {hosts}")
        return cls(paths, hyperparameters, channels, hosts, current, int(env.get("SM_NUM_GPUS", 0) or 0))


# ---------------------------------------------------------------------------- hyperparameters
def stringify_hyperparameters(hyperparameters: dict) -> dict[str, str]:
    """Hyperparameters as the platform stores them: strings as-is, anything else as JSON."""
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in hyperparameters.items()}


def _decode(value):
    """A hyperparameter value as JSON if it parses ('3' → 3, 'true' → True), else the string."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def coerce(key: str, value, type_name: str):
    """Converts one (string) hyperparameter to a TrainArgs field type; bad → one line naming key.

    `type_name` is the field's annotation as written ("int", "float | None", "bool", "str").
    """
    optional = "None" in type_name
    base = type_name.replace("| None", "").replace("None |", "").strip()
    decoded = _decode(value)
    if optional and (decoded is None or (isinstance(decoded, str) and decoded.strip().lower() in ("", "none", "null"))):
        return None
    if base == "bool":
        if isinstance(decoded, bool):
            return decoded
        text = str(decoded).strip().lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
        raise ContractError(f"hyperparameter {key}: expected true or false, got {value!r}")
    if base == "int":
        if isinstance(decoded, int) and not isinstance(decoded, bool):
            return decoded
        if isinstance(decoded, float) and decoded.is_integer():
            return int(decoded)
        raise ContractError(f"hyperparameter {key}: expected an integer, got {value!r}")
    if base == "float":
        if isinstance(decoded, (int, float)) and not isinstance(decoded, bool):
            return float(decoded)
        raise ContractError(f"hyperparameter {key}: expected a number, got {value!r}")
    # Strings: keep the text as given (a vocab file named "123" stays "123"), unquoting JSON.
    if isinstance(decoded, str):
        return decoded
    if isinstance(value, str):
        return value
    if isinstance(decoded, (int, float)):
        return str(decoded)
    raise ContractError(f"hyperparameter {key}: expected a string, got {value!r}")


def _check_choice(key: str, field: str, value):
    """Validates the fields that take fixed words, so a typo fails as one line naming the key.

    precision: auto (the default: picked from the job's hardware), fp32, bf16 or fp16.
    deterministic: auto, on or off; the older true/false (and 1/0, yes/no) still work.
    """
    from albert_ner.train.runtime import check_precision, normalize_determinism

    try:
        if field == "precision":
            return check_precision(value)
        if field == "deterministic":
            return normalize_determinism(value)
    except ValueError as err:
        raise ContractError(f"hyperparameter {key}: {err}") from None
    return value


def _train_fields() -> dict:
    from albert_ner.train.loop import TrainArgs

    return {f.name: str(f.type) for f in dataclasses.fields(TrainArgs)}


def _pretrain_fields() -> dict:
    from albert_ner.pretrain.loop import PretrainArgs

    # The text files come from the channels, not from a hyperparameter.
    return {f.name: str(f.type) for f in dataclasses.fields(PretrainArgs) if f.name != "text_files"}


def parse_hyperparameters(raw: dict, fields: dict | None = None) -> tuple[dict, dict, list[str]]:
    """Splits raw hyperparameters into typed TrainArgs values and job switches.

    `fields` (name → type) replaces the TrainArgs fields, e.g. PretrainArgs' for pretraining.

    Returns:
      (train_values, job_values, notes): train_values keyed by TrainArgs field; job_values
      holds task_name/do_train/do_eval/do_predict/data_dir; notes are lines worth logging.
    Raises:
      ContractError naming the first unknown or malformed key.
    """
    command = "train" if fields is None else "pretrain"
    fields = _train_fields() if fields is None else fields
    train, job, notes = {}, {}, []
    for key in sorted(raw):
        value = raw[key]
        if key in IGNORED_KEYS or key.startswith("sagemaker_"):
            notes.append(f"ignoring hyperparameter {key} (not used by this trainer)")
            continue
        if key in JOB_KEYS:
            if key in ("do_train", "do_eval", "do_predict"):
                job[key] = coerce(key, value, "bool")
            else:
                job[key] = coerce(key, value, "str")
            continue
        field = ARTICLE_RENAMES.get(key, key)
        if field not in fields:
            hint = ""
            if key.replace("-", "_") in fields or key.replace("-", "_") in ARTICLE_RENAMES:
                hint = f" (write it with underscores: {key.replace('-', '_')})"
            raise ContractError(f"unknown hyperparameter {key!r}{hint}; names are the `albert-ner {command}` options with underscores")
        if field in train:
            raise ContractError(f"hyperparameter {key} sets {field}, which another key already set")
        train[field] = _check_choice(key, field, coerce(key, value, fields[field]))
    if job.get("task_name") not in (None, "") and job["task_name"].lower() != "ner":
        raise ContractError(f"hyperparameter task_name: only 'ner' is supported, got {job['task_name']!r}")
    if job.get("task") not in (None, "") and job["task"].lower() not in TASKS:
        raise ContractError(f"hyperparameter task: expected one of {', '.join(TASKS)}, got {job['task']!r}")
    if job.get("do_train") is False:
        raise ContractError("hyperparameter do_train: false is not supported: this job trains a model")
    return train, job, notes


# ---------------------------------------------------------------------------- data files
def _data_files(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )


def _named(files: list[Path], names: tuple[str, ...]) -> Path | None:
    for name in names:  # in order of preference: dev before validation before val ...
        for f in files:
            if f.name.split(".")[0].lower() == name:
                return f
    return None


def find_data_file(directory: Path, names: tuple[str, ...], key: str,
                   explicit: str | None = None, single_file_ok: bool = False) -> Path | None:
    """A data file in a channel directory: `explicit` if given, else one named like `names`.

    A channel with exactly one file uses it (`single_file_ok`), so a channel that is just
    "the training data" needs no naming convention.
    """
    if explicit:
        path = Path(explicit) if Path(explicit).is_absolute() else directory / explicit
        if not path.is_file():
            raise ContractError(f"hyperparameter {key}: {path} is not a file")
        return path
    files = _data_files(directory)
    found = _named(files, names)
    if found is None and single_file_ok and len(files) == 1:
        found = files[0]
    return found


def _resolve_path(key: str, value: str, paths: JobPaths, channels: dict) -> str:
    """Finds a file named by a hyperparameter: as given, then in the code dir and channels.

    The article names files relative to its code directory (`./albert_config/vocab.txt`);
    in a job those live in the source dir (cwd), the image's /opt/ml/code, or a channel.
    """
    def exists(candidate: Path) -> bool:
        # A TF1 checkpoint is a prefix: model.ckpt names model.ckpt.index + .data-*.
        return candidate.exists() or candidate.with_name(candidate.name + ".index").exists()

    path = paths.remap(value)
    if path.is_absolute():
        if exists(path):
            return str(path)
        raise ContractError(f"hyperparameter {key}: {value} does not exist")
    roots = [Path.cwd(), paths.code_dir, *channels.values()]
    for root in roots:
        if exists(root / path):
            return str(root / path)
    for root in channels.values():  # an uploaded channel usually drops the folder prefix
        if exists(root / path.name):
            return str(root / path.name)
    raise ContractError(
        f"hyperparameter {key}: {value} not found in {', '.join(str(r) for r in roots)}"
    )


def has_checkpoint(directory: Path) -> bool:
    """True when `directory` holds a resumable checkpoint (see train/checkpoint.py)."""
    return any((Path(directory) / name / "state.json").exists() for name in ("latest", "old"))


# ---------------------------------------------------------------------------- the plan
@dataclasses.dataclass
class JobPlan:
    """What one host will do: its TrainArgs and the job-level extras."""

    args: object  # TrainArgs
    test_file: Path | None
    notes: list


def _job_paths_and_resume(values: dict, paths, job, notes: list) -> None:
    """Shared by training and pretraining jobs: resolves path hyperparameters against the code
    dir and channels, lets the job's model dir win over `output_dir`, and resumes from a
    checkpoint when SageMaker synced one in (spot restarts)."""
    from albert_ner.model.config import PRESETS

    for key in PATH_FIELDS:
        value = values.get(key)
        built_in = PRESETS if key == "model_config" else BUILT_IN_VALUES.get(key, ())
        if value and key == "lexicon":  # "jieba,terms.tsv": resolve each file, keep the names
            values[key] = ",".join(
                part if part in built_in else _resolve_path(key, part, paths, job.channels)
                for part in value.split(",")
            )
        elif value and value not in built_in:
            values[key] = _resolve_path(key, value, paths, job.channels)
    if "output_dir" in values and paths.remap(values["output_dir"]) != paths.model:
        notes.append(f"output_dir {values['output_dir']} replaced by the job's model dir {paths.model}")
    values.pop("output_dir", None)
    values.setdefault("checkpoint_dir", str(paths.checkpoints))
    if "resume" not in values:
        values["resume"] = has_checkpoint(Path(values["checkpoint_dir"]))


def plan_job(job: JobEnvironment) -> JobPlan:
    """Maps a job's hyperparameters, channels and hosts onto TrainArgs (no training yet)."""
    from albert_ner.train.loop import TrainArgs

    paths = job.paths
    values, switches, notes = parse_hyperparameters(job.hyperparameters)

    # The training data: the article's data_dir (mapped onto the channel tree), else the
    # `training` channel.
    if switches.get("data_dir"):
        data_dir = paths.remap(switches["data_dir"])
        if not data_dir.is_absolute():
            data_dir = Path(_resolve_path("data_dir", switches["data_dir"], paths, job.channels))
        if not data_dir.is_dir():
            raise ContractError(f"hyperparameter data_dir: {switches['data_dir']} is not a directory")
    elif "training" in job.channels:
        data_dir = job.channels["training"]
    else:
        found = ", ".join(job.channels) or "none"
        raise ContractError(f"missing input channel 'training' (channels given: {found})")

    train_file = find_data_file(data_dir, TRAIN_NAMES, "train_file",
                                values.pop("train_file", None), single_file_ok=True)
    if train_file is None:
        names = ", ".join(p.name for p in _data_files(data_dir)) or "no files"
        raise ContractError(
            f"channel training ({data_dir}): no train.* file among {names}; "
            "name it train.txt or set hyperparameter train_file"
        )

    dev_file = None
    explicit_dev = values.pop("dev_file", None)
    if switches.get("do_eval", True):
        if "validation" in job.channels:
            dev_file = find_data_file(job.channels["validation"], DEV_NAMES, "dev_file",
                                      explicit_dev, single_file_ok=True)
            if dev_file is None:
                raise ContractError(
                    f"channel validation ({job.channels['validation']}): no dev.* file and not a single file"
                )
        else:
            dev_file = find_data_file(data_dir, DEV_NAMES, "dev_file", explicit_dev)
        if dev_file is None:
            notes.append("no validation data (no validation channel, no dev.txt): training without evaluation")
    test_file = find_data_file(data_dir, TEST_NAMES, "test_file") if switches.get("do_predict") else None

    _job_paths_and_resume(values, paths, job, notes)

    # Only the chief's model goes to model.tar.gz; other hosts write theirs out of the way.
    if job.is_chief:
        output_dir = str(paths.model)
    else:
        output_dir = tempfile.mkdtemp(prefix=f"albert-ner-{job.current_host}-")
        values["export"] = False
    try:
        args = TrainArgs(train_file=str(train_file), dev_file=str(dev_file) if dev_file else None,
                         output_dir=output_dir, **values)
    except ValueError as err:
        raise ContractError(f"hyperparameters: {err}") from None
    return JobPlan(args, test_file, notes)


def job_task(job: JobEnvironment) -> str:
    """"pretrain" or "train": the `task` hyperparameter, else whether a pretraining channel came.

    A job given both a `pretraining` and a `training` channel must say which it is.
    """
    task = str(job.hyperparameters.get("task", "") or "").strip().lower()
    if task:
        if task not in TASKS:
            raise ContractError(f"hyperparameter task: expected one of {', '.join(TASKS)}, got {task!r}")
        return task
    if PRETRAINING_CHANNEL in job.channels:
        if "training" in job.channels:
            raise ContractError(
                "channels 'pretraining' and 'training' both given: set hyperparameter task to "
                "'pretrain' (masked-LM pretraining) or 'train' (a tagger)"
            )
        return "pretrain"
    return "train"


@dataclasses.dataclass
class PretrainPlan:
    """What a pretraining job will do: its PretrainArgs and lines worth logging."""

    args: object  # PretrainArgs
    notes: list


def plan_pretraining(job: JobEnvironment) -> PretrainPlan:
    """Maps a pretraining job onto PretrainArgs: text from the `pretraining` channel (every
    file in it), else the training file of the `training` channel (its text side)."""
    from albert_ner.pretrain.loop import PretrainArgs

    if len(job.hosts) > 1:
        raise ContractError(
            f"pretraining runs on one instance, this job has {len(job.hosts)}: set instance_count to 1"
        )
    paths = job.paths
    values, _, notes = parse_hyperparameters(job.hyperparameters, _pretrain_fields())
    if PRETRAINING_CHANNEL in job.channels:
        text_files = [str(job.channels[PRETRAINING_CHANNEL])]
        if not _data_files(job.channels[PRETRAINING_CHANNEL]):
            raise ContractError(f"channel pretraining ({job.channels[PRETRAINING_CHANNEL]}) holds no files")
    elif "training" in job.channels:
        # Only the training file: pretraining on the dev/test text would leak into evaluation.
        train_file = find_data_file(job.channels["training"], TRAIN_NAMES, "train_file", single_file_ok=True)
        if train_file is None:
            raise ContractError(f"channel training ({job.channels['training']}): no train.* file to pretrain on")
        text_files = [str(train_file)]
        notes.append(f"no pretraining channel: pretraining on the text of {train_file}")
    else:
        found = ", ".join(job.channels) or "none"
        raise ContractError(f"missing input channel 'pretraining' (channels given: {found})")

    _job_paths_and_resume(values, paths, job, notes)
    try:
        args = PretrainArgs(text_files=text_files, output_dir=str(paths.model), **values)
    except ValueError as err:
        raise ContractError(f"hyperparameters: {err}") from None
    return PretrainPlan(args, notes)


# ---------------------------------------------------------------------------- multi-node
def tf_config_for(job: JobEnvironment, environ=None) -> dict | None:
    """The TF_CONFIG that makes every host a MultiWorkerMirroredStrategy worker (None: 1 host)."""
    env = os.environ if environ is None else environ
    if len(job.hosts) < 2:
        return None
    if env.get(ENV_WORKER_ADDRESSES):
        addresses = _env_json(env, ENV_WORKER_ADDRESSES, {})
        missing = [h for h in job.hosts if h not in addresses]
        if missing:
            raise ContractError(f"{ENV_WORKER_ADDRESSES} has no address for host(s) {', '.join(missing)}")
    else:
        port = int(env.get(ENV_WORKER_PORT, DEFAULT_WORKER_PORT))
        addresses = {h: f"{h}:{port}" for h in job.hosts}
    return {
        "cluster": {"worker": [addresses[h] for h in job.hosts]},
        "task": {"type": "worker", "index": job.hosts.index(job.current_host)},
    }
