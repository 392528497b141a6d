"""Get, check and stage the corpus for the workshop notebooks.

Two sources (notebook 01's `data_source` picks):
  "msra"       the MSRA corpus in `data_dir` (`train.txt`, `dev.txt`, `test.txt`); when it is
               not there, the public files are downloaded and verified by sha256
               (`download_msra`), then split like the shared copy (dev = every 15th sentence of
               the official training set). No network and no copy is a clear error, never a
               silent switch to other data.
  "synthetic"  a generated corpus (`albert_ner.data.synthetic`), only when asked for: offline
               CI without the corpus, or a first look.

The slice the workshop trains on is written to WORKSPACE/data/, and the SageMaker channels to
WORKSPACE/channels/{training,validation}/ (what `/opt/ml/input/data/<channel>` will hold), and
optionally to S3. WORKSPACE/setup.json records what was chosen, for the later notebooks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import urllib.request
from pathlib import Path

SPLITS = ("train", "dev", "test")
# The channel each split is staged into (test is kept aside for the final report).
CHANNELS = {"training": "train", "validation": "dev"}
SETUP_FILE = "setup.json"


@dataclasses.dataclass(frozen=True)
class UpstreamFile:
    url: str
    sha256: str


_UPSTREAM = "https://raw.githubusercontent.com/OYE93/Chinese-NLP-Corpus/master/NER/MSRA/"
# The public MSRA NER files (tab-separated BIO) and their published checksums.
MSRA_UPSTREAM = {
    "train": UpstreamFile(_UPSTREAM + "msra_train_bio.txt",
                          "b403d1318c5289917ad2ca4136279592521684748327e93f1bf49a3845a40ac7"),
    "test": UpstreamFile(_UPSTREAM + "msra_test_bio.txt",
                         "2be8e580bcb22e9086e4403d82a7ec0f6e18019ebef35b0fd52941724bdf89a3"),
}
# Every DEV_EVERY-th sentence of the official training set (counting from 1) is the dev split.
DEV_EVERY = 15


class ChecksumError(ValueError):
    """A downloaded file does not have the published sha256."""


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_verified(url: str, target: str | os.PathLike, sha256: str, timeout: float = 60.0) -> Path:
    """Downloads `url` to `target` unless a file with the right sha256 is already there.

    The download goes to `target.part` and is renamed only after its checksum matched, so a
    half-downloaded or tampered file never looks complete.

    Raises:
      ChecksumError: the downloaded bytes do not have `sha256` (the .part file is removed).
    """
    target = Path(target)
    if target.exists() and sha256_file(target) == sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as fh:
        shutil.copyfileobj(response, fh, 1 << 20)
    actual = sha256_file(part)
    if actual != sha256:
        part.unlink()
        raise ChecksumError(f"{url}: sha256 {actual}, expected {sha256}; file not kept")
    os.replace(part, target)
    return target


def _sentence_blocks(text: str) -> list[list[str]]:
    """CoNLL text → sentences as lists of lines; an empty tag (`0\\t`) becomes `O`."""
    blocks, current = [], []
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            if current:
                blocks.append(current)
                current = []
            continue
        char, sep, tag = line.partition("\t")
        if sep and not tag.strip():
            line = f"{char}\tO"
        current.append(line)
    if current:
        blocks.append(current)
    return blocks


def _write_blocks(blocks: list[list[str]], path: Path) -> Path:
    path.write_text("".join("\n".join(b) + "\n\n" for b in blocks), encoding="utf-8")
    return path


def download_msra(target_dir: str | os.PathLike, upstream: dict | None = None, timeout: float = 60.0) -> dict:
    """Downloads the public MSRA files, verifies them and writes train/dev/test.txt.

    Args:
      target_dir: where `upstream/` (the verified originals) and the three splits go.
      upstream: {"train": UpstreamFile, "test": UpstreamFile}; default MSRA_UPSTREAM.
    Returns:
      {"train": Path, "dev": Path, "test": Path}.
    """
    upstream = upstream or MSRA_UPSTREAM
    target_dir = Path(target_dir)
    originals = {
        split: fetch_verified(f.url, target_dir / "upstream" / f.url.rsplit("/", 1)[-1], f.sha256, timeout)
        for split, f in upstream.items()
    }
    official = _sentence_blocks(originals["train"].read_text(encoding="utf-8"))
    dev = [b for i, b in enumerate(official, 1) if i % DEV_EVERY == 0]
    train = [b for i, b in enumerate(official, 1) if i % DEV_EVERY != 0]
    test = _sentence_blocks(originals["test"].read_text(encoding="utf-8"))
    return {
        "train": _write_blocks(train, target_dir / "train.txt"),
        "dev": _write_blocks(dev, target_dir / "dev.txt"),
        "test": _write_blocks(test, target_dir / "test.txt"),
    }


def corpus_present(directory: str | os.PathLike | None) -> bool:
    """True when `directory` holds train.txt and dev.txt."""
    if not directory:
        return False
    directory = Path(directory)
    return (directory / "train.txt").is_file() and (directory / "dev.txt").is_file()


DATA_SOURCES = ("msra", "synthetic")


def prepare_corpus(
    workspace: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    source: str = "msra",
    train_sentences: int | None = None,
    dev_sentences: int | None = None,
    test_sentences: int | None = None,
    synthetic_seed: int = 0,
    upstream: dict | None = None,
) -> dict:
    """Writes the workshop's slice of the corpus to WORKSPACE/data/{train,dev,test}.txt.

    Args:
      workspace: the notebooks' shared working directory.
      data_dir: with source "msra", the directory with MSRA-style train/dev/test.txt (test
        optional), or where they are downloaded to when missing.
      source: "msra" or "synthetic" (see the module docstring).
      train_sentences, dev_sentences, test_sentences: keep the first N of each split
        (None = all; for generated data None means 800 / 150 / 150).
      synthetic_seed: seed of the generated corpus.
      upstream: the download's files (default MSRA_UPSTREAM).
    Returns:
      {"source": "msra" | "synthetic", "origin": str, "train": str, "dev": str, "test": str}.
    Raises:
      RuntimeError: source "msra", the corpus is not in `data_dir` and the download failed —
        the message names the URLs and how to supply the files instead.
    """
    from albert_ner.data.readers import read_conll
    from albert_ner.data.synthetic import write_synthetic_split
    from albert_ner.data.writers import write_conll

    out = Path(workspace) / "data"
    out.mkdir(parents=True, exist_ok=True)
    limits = {"train": train_sentences, "dev": dev_sentences, "test": test_sentences}
    if source not in DATA_SOURCES:
        raise ValueError(f"data_source must be one of {', '.join(DATA_SOURCES)}, got {source!r}")
    if source == "msra":
        if not data_dir:
            raise ValueError('data_source "msra" needs data_dir: where the corpus is, or is downloaded to')
        if not corpus_present(data_dir):
            _download_or_explain(data_dir, upstream or MSRA_UPSTREAM)
        paths = {}
        for split in SPLITS:
            split_file = Path(data_dir) / f"{split}.txt"
            if not split_file.is_file():  # no test split: score on dev
                split_file = Path(data_dir) / "dev.txt"
            examples = read_conll(split_file).examples
            if limits[split] is not None:
                examples = examples[: limits[split]]
            paths[split] = str(write_conll(examples, out / f"{split}.txt"))
        return {"source": "msra", "origin": str(Path(data_dir).resolve()), **paths}
    sizes = {k: (v if v is not None else d) for (k, v), d in zip(limits.items(), (800, 150, 150))}
    written = write_synthetic_split(out, seed=synthetic_seed, n_train=sizes["train"],
                                    n_dev=sizes["dev"], n_test=sizes["test"])
    return {"source": "synthetic", "origin": f"albert_ner.data.synthetic (seed {synthetic_seed})",
            **{k: str(v) for k, v in written.items()}}


def validate_corpus(paths: dict) -> list[dict]:
    """Reads every split fully; one row per split: sentences, format, scheme, types, repairs.

    A malformed file raises `albert_ner.data.DataError` naming file and line.
    """
    from albert_ner.data.readers import read_corpus

    rows = []
    for split in SPLITS:
        if split not in paths:
            continue
        corpus = read_corpus(paths[split])
        rows.append({
            "split": split,
            "file": Path(paths[split]).name,
            "sentences": len(corpus.examples),
            "format": corpus.format,
            "scheme": corpus.scheme,
            "types": ", ".join(corpus.types),
            "repaired_tags": corpus.repairs,
        })
    return rows


def stage_channels(workspace: str | os.PathLike, paths: dict) -> dict:
    """Copies the splits into WORKSPACE/channels/<channel>/ as SageMaker will mount them.

    Returns:
      {"training": str dir (holds train.txt), "validation": str dir (holds dev.txt)}.
    """
    root = Path(workspace) / "channels"
    channels = {}
    for channel, split in CHANNELS.items():
        directory = root / channel
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        shutil.copyfile(paths[split], directory / f"{split}.txt")
        channels[channel] = str(directory)
    return channels


def upload_channels(channels: dict, bucket: str, prefix: str, s3_client=None) -> dict:
    """Uploads each channel directory to s3://bucket/prefix/<channel>/; returns the URIs.

    Args:
      channels: output of `stage_channels`.
      s3_client: a boto3 S3 client (default: `boto3.client("s3")`, which honours
        AWS_ENDPOINT_URL, e.g. a local moto server).
    """
    if s3_client is None:
        import boto3

        s3_client = boto3.client("s3")
    uris = {}
    for channel, directory in channels.items():
        key_prefix = f"{prefix.strip('/')}/{channel}"
        for path in sorted(Path(directory).rglob("*")):
            if path.is_file():
                key = f"{key_prefix}/{path.relative_to(directory).as_posix()}"
                s3_client.upload_file(str(path), bucket, key)
        uris[channel] = f"s3://{bucket}/{key_prefix}/"
    return uris


def save_setup(workspace: str | os.PathLike, record: dict) -> Path:
    """Writes WORKSPACE/setup.json (what notebook 01 chose) for the later notebooks."""
    path = Path(workspace) / SETUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


def _download_or_explain(data_dir: str | os.PathLike, upstream: dict) -> None:
    """`download_msra` into `data_dir`, or a RuntimeError saying how to get the corpus there."""
    try:
        download_msra(data_dir, upstream)
    except (OSError, ChecksumError) as err:  # URLError is an OSError: no network, DNS, HTTP
        urls = "\n".join(f"  {split}: {f.url} (sha256 {f.sha256})" for split, f in upstream.items())
        raise RuntimeError(
            f"MSRA is not in {Path(data_dir).resolve()} and downloading it failed: {err}\n"
            f"Either download these files where there is network and put them into "
            f"{Path(data_dir).resolve() / 'upstream'}/ (they are split into train/dev/test.txt on "
            f"the next run):\n{urls}\n"
            "or copy your own train.txt and dev.txt (test.txt optional; a character and its BIO tag "
            "per line, a blank line between sentences) into that directory, "
            'or set data_source = "synthetic" to practise on generated data.'
        ) from None


def load_setup(workspace: str | os.PathLike) -> dict:
    """Reads WORKSPACE/setup.json; says to run notebook 01 first when it is missing."""
    path = Path(workspace) / SETUP_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run 01_setup_and_data.ipynb first (same workspace)")
    return json.loads(path.read_text(encoding="utf-8"))


NO_CHECKPOINT = ("", "none", "None", "random")
# pretrained_checkpoint "auto": the article's model where it can be fine-tuned in reasonable
# time (a GPU), the no-download BiLSTM-CRF recipe elsewhere (ALBERT-base on two CPU cores
# takes hours for what the BiLSTM-CRF reaches in minutes; BENCHMARKS.md).
GPU_DEFAULT_CHECKPOINT = "albert_base_zh_additional_36k_steps"


def choose_pretrained(spec: str | None, has_gpu: bool | None = None) -> tuple[str, str]:
    """(checkpoint spec, why) for notebook 01's `pretrained_checkpoint`; only "auto" is decided."""
    if str(spec) != "auto":
        return str(spec), "set explicitly"
    if has_gpu is None:
        from albert_ner.train.runtime import detect_gpus

        has_gpu = bool(detect_gpus())
    if has_gpu:
        return GPU_DEFAULT_CHECKPOINT, ("auto: a GPU is visible, so the article's model — the pretrained "
                                        f"{GPU_DEFAULT_CHECKPOINT} + CRF, downloaded and verified — is fine-tuned")
    return "none", ("auto: no GPU, so the no-download BiLSTM-CRF recipe (fine-tuning ALBERT-base on a CPU "
                    "takes hours); set pretrained_checkpoint to a name or path to insist")


def prepare_pretrained(spec: str | None, cache_dir: str | os.PathLike | None = None) -> dict:
    """Finds (downloading when it is a known name) the pretrained checkpoint to fine-tune.

    Args:
      spec: "auto" (`choose_pretrained`: the article's checkpoint with a GPU, none without),
        "none" (no checkpoint: the default recipe), a known model name such as
        "albert_base_zh_additional_36k_steps" (the article's), or a local path.
    Returns:
      {"init_checkpoint": str | None, "message": str}; `init_checkpoint` is what
      `TrainArgs(init_checkpoint=...)` takes; the message says which and why.
    """
    spec, why = choose_pretrained(spec)
    if spec is None or str(spec) in NO_CHECKPOINT:
        return {"init_checkpoint": None,
                "message": f"no pretrained checkpoint ({why}): the no-download recipe trains from "
                           "random weights"}
    try:
        from albert_ner import checkpoints
    except ImportError as err:  # the checkpoints package is optional in old checkouts
        return {"init_checkpoint": None,
                "message": f"albert_ner.checkpoints is not available ({err}); training from random init"}
    path = spec
    if not Path(spec).exists() and spec in getattr(checkpoints, "KNOWN_MODELS", {}):
        path = str(checkpoints.fetch_model(spec, cache_dir=cache_dir))
    pretrained = checkpoints.resolve_pretrained(path)
    return {"init_checkpoint": str(path),
            "message": f"pretrained checkpoint {spec} ({why}): layout {pretrained.layout}, "
                       f"vocab {pretrained.vocab_file}"}
