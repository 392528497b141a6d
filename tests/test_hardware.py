"""Precision and determinism that fit the hardware (issue 9): detection, decisions, the CLI,
the SageMaker contract and the GPU throughput benchmark.

Decisions are tested on made-up machines (`Hardware` values); the CLI runs patch the
detection the loops call, so they check the same thing on every test machine.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from albert_ner.cli import main
from albert_ner.sagemaker.contract import ContractError, JobEnvironment, parse_hyperparameters, plan_job
from albert_ner.train import runtime
from albert_ner.train.runtime import GPU, Hardware, resolve_determinism, resolve_precision

REPO = Path(__file__).resolve().parents[1]
BENCHMARK = REPO / "benchmarks" / "gpu_throughput.py"

# /proc/cpuinfo of a 2-processor x86 VM, trimmed; only the flags differ between the two CPUs.
CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512bw {extra} clzero
bogomips\t: 5192.27

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512bw {extra} clzero
bogomips\t: 5192.27
"""
ARM_CPUINFO = "processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm aes bf16 sve\nCPU part\t: 0xd40\n"

CPU_BF16 = Hardware(cpu_flags=frozenset({"avx2", "avx512f", "avx512_bf16"}))
CPU_AMX = Hardware(cpu_flags=frozenset({"avx2", "amx_tile", "amx_bf16"}))
CPU_PLAIN = Hardware(cpu_flags=frozenset({"avx2", "avx512f"}))
CPU_UNKNOWN = Hardware(cpu_flags=None)


def gpus(*capabilities) -> Hardware:
    return Hardware(gpus=tuple(GPU(f"gpu{i}", c) for i, c in enumerate(capabilities)),
                    cpu_flags=frozenset({"avx2"}))


# ----------------------------------------------------------------------------- detection
def test_cpuinfo_flags_with_and_without_avx512_bf16():
    with_bf16 = runtime.cpu_flags_from_cpuinfo(CPUINFO.format(extra="avx512_bf16 avx512_vnni"))
    assert {"avx512_bf16", "avx512f", "avx2"} <= with_bf16
    assert "bogomips" not in with_bf16 and "5192.27" not in with_bf16  # only the flags lines
    without = runtime.cpu_flags_from_cpuinfo(CPUINFO.format(extra="avx512_vnni"))
    assert "avx512_bf16" not in without and "avx512f" in without
    assert Hardware(cpu_flags=with_bf16).cpu_bf16 == ("avx512_bf16",)
    assert Hardware(cpu_flags=without).cpu_bf16 == ()
    assert runtime.cpu_name_from_cpuinfo(CPUINFO.format(extra="")) == "AMD EPYC 9R14"


def test_cpuinfo_amx_arm_and_empty_text():
    assert Hardware(cpu_flags=runtime.cpu_flags_from_cpuinfo(CPUINFO.format(extra="amx_bf16 amx_tile"))).cpu_bf16 == ("amx_bf16",)
    # ARM names its flags `Features`; its `bf16` is not an x86 AVX512-BF16/AMX-BF16 flag.
    arm = runtime.cpu_flags_from_cpuinfo(ARM_CPUINFO)
    assert {"asimd", "bf16", "sve"} <= arm and Hardware(cpu_flags=arm).cpu_bf16 == ()
    assert runtime.cpu_flags_from_cpuinfo("") == frozenset()
    assert runtime.cpu_name_from_cpuinfo(ARM_CPUINFO) is None


def test_detect_hardware_reads_the_given_cpuinfo_and_never_crashes(tmp_path, monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO.format(extra="avx512_bf16"))
    hardware = runtime.detect_hardware(str(path))
    assert hardware.cpu_bf16 == ("avx512_bf16",) and hardware.cpu_name == "AMD EPYC 9R14"
    assert isinstance(hardware.gpus, tuple)  # () on CPU-only TensorFlow, never an exception
    assert all(isinstance(g, GPU) for g in hardware.gpus)
    missing = runtime.detect_hardware(str(tmp_path / "no-such-file"))
    assert missing.cpu_flags is None and missing.cpu_bf16 == ()


@pytest.mark.parametrize("cap,bf16,avx512", [
    ("AVX2", (), False),                       # a machine without AVX-512, rehearsed
    ("avx512_core", (), True),                 # AVX-512 stays, its bf16 extension does not
    ("AVX512_CORE_BF16", ("avx512_bf16",), True),
    ("ALL", ("avx512_bf16",), True),
    ("", ("avx512_bf16",), True),              # set but empty: no cap
])
def test_onednn_isa_cap_hides_the_instructions_onednn_may_not_use(tmp_path, monkeypatch, cap, bf16, avx512):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO.format(extra="avx512_bf16"))
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    hardware = runtime.detect_hardware(str(path))
    assert hardware.cpu_bf16 == bf16
    assert ("avx512f" in hardware.cpu_flags) == avx512 and "avx2" in hardware.cpu_flags
    # and so `auto` does not pick bf16 for a transformer where oneDNN cannot run it natively
    assert runtime.resolve_precision("auto", "albert", hardware).value == ("bf16" if bf16 else "fp32")


def test_hardware_description_names_the_device():
    assert gpus((8, 6)).describe() == "GPU gpu0 (compute capability 8.6)"
    assert "2×" in gpus((7, 0), (7, 0)).describe()
    text = Hardware(cpu_flags=frozenset({"avx512_bf16"}), cpu_name="AMD EPYC").describe()
    assert text.startswith("CPU AMD EPYC") and "AVX512-BF16" in text
    assert "no bf16 instructions" in CPU_PLAIN.describe()


# ----------------------------------------------------------------------------- precision
@pytest.mark.parametrize("hardware,expected", [
    (gpus((8, 0)), "bf16"),
    (gpus((9, 0)), "bf16"),
    (gpus((7, 5)), "fp16"),
    (gpus((7, 0)), "fp16"),
    (gpus((6, 0)), "fp32"),
    (gpus((3, 7)), "fp32"),  # the article's K80
    (gpus(None), "fp32"),  # capability not reported
    (gpus((8, 6), (7, 0)), "fp16"),  # every replica runs one policy: the weakest GPU decides
    (CPU_BF16, "bf16"),
    (CPU_AMX, "bf16"),
    (CPU_PLAIN, "fp32"),
    (CPU_UNKNOWN, "fp32"),
])
@pytest.mark.parametrize("model_type", ["albert", "bert"])
def test_auto_precision_for_transformers(hardware, expected, model_type):
    choice = resolve_precision("auto", model_type, hardware)
    assert choice.value == expected
    assert choice.reason.startswith("auto: ")


@pytest.mark.parametrize("hardware", [gpus((8, 0)), gpus((7, 5)), CPU_BF16, CPU_AMX, CPU_PLAIN])
def test_auto_keeps_the_bilstm_crf_in_fp32(hardware):
    choice = resolve_precision("auto", "chars", hardware)
    assert choice.value == "fp32" and "chars" in choice.reason


def test_auto_reasons_say_why():
    assert "AVX512-BF16" in resolve_precision("auto", "albert", CPU_BF16).reason
    assert "2x slower" in resolve_precision("auto", "albert", CPU_PLAIN).reason
    assert "7.5" in resolve_precision("auto", "albert", gpus((7, 5))).reason
    assert "8.6" in resolve_precision("auto", "albert", gpus((8, 6))).reason


@pytest.mark.parametrize("choice", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("hardware", [gpus((8, 0)), gpus((6, 0)), CPU_BF16, CPU_PLAIN])
def test_explicit_precision_is_kept(choice, hardware):
    for model_type in ("albert", "chars"):
        result = resolve_precision(choice, model_type, hardware)
        assert result.value == choice and result.reason.startswith("set explicitly")


def test_explicit_bf16_where_it_is_slow_gets_a_note():
    assert "2x slower" in resolve_precision("bf16", "albert", CPU_PLAIN).reason
    assert "note" not in resolve_precision("bf16", "albert", CPU_BF16).reason
    assert "fp16 is faster" in resolve_precision("bf16", "albert", gpus((7, 5))).reason


def test_unknown_precision_is_a_clear_error():
    with pytest.raises(ValueError, match="auto, fp32, bf16, fp16.*'fp8'"):
        resolve_precision("fp8", "albert", CPU_PLAIN)
    from albert_ner.train.loop import TrainArgs

    with pytest.raises(ValueError, match="precision"):
        TrainArgs(train_file="t", output_dir="o", precision="half")


# ----------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("choice,hardware,expected", [
    ("auto", CPU_PLAIN, True),
    ("auto", CPU_BF16, True),
    ("auto", gpus((8, 0)), False),
    ("auto", gpus(None), False),
    ("on", gpus((8, 0)), True),
    ("off", CPU_PLAIN, False),
    (True, gpus((8, 0)), True),  # the older boolean spelling
    (False, CPU_PLAIN, False),
    ("true", gpus((8, 0)), True),
    ("False", CPU_PLAIN, False),
    ("1", CPU_PLAIN, True),
    ("no", CPU_PLAIN, False),
])
def test_determinism_resolution(choice, hardware, expected):
    result = resolve_determinism(choice, hardware)
    assert result.value is expected
    assert ("auto" in result.reason) == (choice == "auto")
    if choice == "auto":
        assert ("GPU" in result.reason) == hardware.has_gpu


def test_bad_determinism_is_a_clear_error():
    with pytest.raises(ValueError, match="auto, on or off.*'sometimes'"):
        resolve_determinism("sometimes", CPU_PLAIN)


def test_train_args_accept_old_booleans():
    from albert_ner.pretrain.loop import PretrainArgs
    from albert_ner.train.loop import TrainArgs

    assert TrainArgs(train_file="t", output_dir="o").deterministic == "auto"
    assert TrainArgs(train_file="t", output_dir="o").precision == "auto"
    assert TrainArgs(train_file="t", output_dir="o", deterministic=False).deterministic == "off"
    assert PretrainArgs(text_files=["t"], output_dir="o", deterministic=True).deterministic == "on"


# ----------------------------------------------------------------------------- shared helpers
def test_format_eta_loss_scale_and_unscale():
    import numpy as np
    import tensorflow as tf

    assert runtime.format_eta(3725.9) == "1:02:05" and runtime.format_eta(-4) == "0:00:00"
    assert "dynamic loss scaling" in runtime.resolve_precision("auto", "albert", gpus((7, 5))).reason
    dense = runtime.unscale(tf.constant([2.0, 4.0]), 2.0)
    np.testing.assert_allclose(dense.numpy(), [1.0, 2.0])
    sparse = runtime.unscale(tf.IndexedSlices(tf.constant([[8.0]]), tf.constant([3]), tf.constant([5, 1])), 4.0)
    assert isinstance(sparse, tf.IndexedSlices)
    np.testing.assert_allclose(sparse.values.numpy(), [[2.0]])
    assert sparse.indices.numpy().tolist() == [3]


def test_set_precision_returns_the_policy_to_restore():
    import keras

    before = keras.mixed_precision.global_policy().name
    previous = runtime.set_precision("bf16")
    try:
        assert previous == before
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    finally:
        runtime.restore_policy(previous)
    assert keras.mixed_precision.global_policy().name == before
    with pytest.raises(ValueError):
        runtime.set_precision("auto")  # resolve first


def test_the_loops_use_the_shared_module_not_private_copies():
    import albert_ner.pretrain.loop as pretrain_loop
    import albert_ner.train.loop as train_loop

    for name in ("_set_precision", "_unscale", "_format_eta"):
        assert not hasattr(train_loop, name), name
    source = Path(pretrain_loop.__file__).read_text(encoding="utf-8")
    assert "from albert_ner.train.loop import _" not in source


# ----------------------------------------------------------------------------- the CLI
def tiny_train_argv(data: dict, out: Path, *extra: str) -> list[str]:
    return ["train", "--train-file", str(data["train"]), "--dev-file", str(data["dev"]),
            "--output-dir", str(out), "--batch-size", "8", "--max-seq-length", "24",
            "--max-train-sentences", "32", "--max-steps", "2", "--eval-every", "2",
            "--log-every", "1", "--no-export", *extra]


@pytest.mark.parametrize("hardware,model,expected_precision,expected_deterministic", [
    (CPU_BF16, ["--model-config", "micro"], "bf16", True),
    (CPU_PLAIN, ["--model-config", "micro"], "fp32", True),
    # chars stays fp32 even where a transformer would get bf16; a GPU turns determinism off
    (gpus((8, 0)), ["--bigram-buckets", "512"], "fp32", False),
])
def test_train_cli_prints_and_records_its_choices(synthetic_data, tmp_path, capsys, monkeypatch,
                                                  hardware, model, expected_precision, expected_deterministic):
    import keras

    import albert_ner.train.loop as train_loop

    monkeypatch.setattr(train_loop, "detect_hardware", lambda: hardware)
    out = tmp_path / "model"
    assert main(tiny_train_argv(synthetic_data, out, *model)) == 0
    printed = capsys.readouterr().out
    precision_lines = [line for line in printed.splitlines() if line.startswith("precision: ")]
    assert len(precision_lines) == 1 and precision_lines[0].startswith(f"precision: {expected_precision} (auto: ")
    determinism = [line for line in printed.splitlines() if line.startswith("deterministic ops: ")]
    assert determinism == [determinism[0]]
    assert determinism[0].startswith(f"deterministic ops: {'on' if expected_deterministic else 'off'} (auto: ")
    saved = json.loads((out / "training_args.json").read_text())
    assert saved["precision"] == "auto" and saved["precision_used"] == expected_precision
    assert saved["deterministic"] == "auto" and saved["deterministic_used"] is expected_deterministic
    # The policy is process-wide: the run puts the previous one back.
    assert keras.mixed_precision.global_policy().name == "float32"


def test_train_cli_explicit_options_and_the_old_flag(synthetic_data, tmp_path, capsys, monkeypatch):
    import albert_ner.train.loop as train_loop

    monkeypatch.setattr(train_loop, "detect_hardware", lambda: CPU_BF16)
    out = tmp_path / "model"
    assert main(tiny_train_argv(synthetic_data, out, "--model-config", "micro", "--precision", "fp32",
                                "--no-deterministic")) == 0
    printed = capsys.readouterr().out
    assert "precision: fp32 (set explicitly)" in printed
    assert "deterministic ops: off (set explicitly)" in printed
    saved = json.loads((out / "training_args.json").read_text())
    assert saved["precision_used"] == "fp32" and saved["deterministic"] == "off"


def saved_model_dtypes(saved_model: Path) -> set[int]:
    """Every dtype an op of the SavedModel's graphs (and their functions) is typed with."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((saved_model / "saved_model.pb").read_bytes())
    types = set()
    for graph in proto.meta_graphs:
        nodes = [*graph.graph_def.node, *(n for f in graph.graph_def.library.function for n in f.node_def)]
        for node in nodes:
            for attr in node.attr.values():
                types.update([attr.type] if attr.type else [])
                types.update(attr.list.type)
    return types


def test_a_bf16_run_exports_a_float32_saved_model(synthetic_data, tmp_path, capsys, monkeypatch):
    """Mixed precision speeds up training only; the SavedModel must serve in float32 anywhere."""
    from tensorflow.core.framework import types_pb2

    import albert_ner.train.loop as train_loop
    from albert_ner.predict import Predictor

    monkeypatch.setattr(train_loop, "detect_hardware", lambda: CPU_BF16)
    out = tmp_path / "model"
    argv = [a for a in tiny_train_argv(synthetic_data, out, "--model-config", "micro") if a != "--no-export"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "precision: bf16 (auto: " in printed and "float32) to " in printed
    types = saved_model_dtypes(out / "1")
    assert types_pb2.DT_FLOAT in types and types_pb2.DT_BFLOAT16 not in types
    assert Predictor.from_model_dir(out).predict(["王小明在北京"])[0].text == "王小明在北京"


def test_cli_defaults_and_choices():
    from albert_ner.cli import build_parser

    parser = build_parser()
    train = parser.parse_args(["train", "--train-file", "a", "--output-dir", "b"])
    assert (train.precision, train.deterministic) == ("auto", "auto")
    assert parser.parse_args(["train", "--train-file", "a", "--output-dir", "b", "--no-deterministic"]).deterministic == "off"
    assert parser.parse_args(["train", "--train-file", "a", "--output-dir", "b", "--deterministic", "on"]).deterministic == "on"
    pretrain = parser.parse_args(["pretrain", "--text-file", "a", "--output-dir", "b"])
    assert (pretrain.precision, pretrain.deterministic) == ("auto", "auto")
    assert parser.parse_args(["pretrain", "--text-file", "a", "--output-dir", "b", "--no-deterministic"]).deterministic == "off"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--train-file", "a", "--output-dir", "b", "--deterministic", "maybe"])


def test_pretrain_cli_resolves_after_the_encoder_and_records_it(synthetic_data, tmp_path, capsys, monkeypatch):
    import keras

    import albert_ner.pretrain.loop as pretrain_loop
    from albert_ner.data.readers import read_corpus

    monkeypatch.setattr(pretrain_loop, "detect_hardware", lambda: gpus((7, 5)))
    text = tmp_path / "text.txt"
    text.write_text("\n".join(e.text for e in read_corpus(synthetic_data["train"]).examples[:60]) + "\n",
                    encoding="utf-8")
    out = tmp_path / "pretrained"
    assert main(["pretrain", "--text-file", str(text), "--output-dir", str(out), "--model-config", "micro",
                 "--batch-size", "8", "--max-seq-length", "24", "--max-steps", "2", "--eval-every", "2"]) == 0
    printed = capsys.readouterr().out
    assert "precision: fp16 (auto: GPU compute capability 7.5" in printed  # fp16 with loss scaling
    assert "deterministic ops: off (auto: a GPU is visible" in printed
    saved = json.loads((out / "pretraining_args.json").read_text())
    assert saved["precision"] == "auto" and saved["precision_used"] == "fp16" and saved["deterministic_used"] is False
    assert keras.mixed_precision.global_policy().name == "float32"


# ----------------------------------------------------------------------------- SageMaker
def test_sagemaker_hyperparameters_take_auto_and_old_booleans():
    values, _, _ = parse_hyperparameters({"precision": "auto", "deterministic": "false"})
    assert values == {"precision": "auto", "deterministic": "off"}
    assert parse_hyperparameters({"deterministic": "true"})[0]["deterministic"] == "on"
    assert parse_hyperparameters({"deterministic": "auto"})[0]["deterministic"] == "auto"
    assert parse_hyperparameters({"deterministic": "off", "precision": "bf16"})[0] == {
        "deterministic": "off", "precision": "bf16"}


@pytest.mark.parametrize("raw,named", [({"precision": "fp8"}, "precision"), ({"deterministic": "maybe"}, "deterministic")])
def test_sagemaker_bad_choices_are_one_line_naming_the_key(raw, named):
    with pytest.raises(ContractError) as info:
        parse_hyperparameters(raw)
    assert str(info.value).startswith(f"hyperparameter {named}:") and "\n" not in str(info.value)


def test_sagemaker_job_defaults_to_auto(tmp_path):
    root = tmp_path / "ml"
    config = root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({"max_steps": "2", "deterministic": "False"}))
    training = root / "input" / "data" / "training"
    training.mkdir(parents=True)
    (training / "train.txt").write_text("中\tB-LOC\n国\tI-LOC\n\n", encoding="utf-8")
    args = plan_job(JobEnvironment.load({"SAGEMAKER_BASE_DIR": str(root)})).args
    assert args.precision == "auto" and args.deterministic == "off"


# ----------------------------------------------------------------------------- the benchmark
def load_benchmark():
    spec = importlib.util.spec_from_file_location("gpu_throughput", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_benchmark_without_a_gpu_says_so_and_exits_0(tmp_path):
    out = tmp_path / "result.json"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, str(BENCHMARK), "--out", str(out)], capture_output=True,
                            text=True, timeout=600, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no GPU visible to TensorFlow" in result.stdout and "--allow-cpu" in result.stdout
    assert not out.exists()


@pytest.mark.slow  # four settings, two of them XLA-compiled
def test_gpu_benchmark_on_cpu_runs_the_training_step_and_writes_json(tmp_path, capsys, monkeypatch):
    import keras

    benchmark = load_benchmark()
    # A CPU with bf16 instructions: the mixed-precision rows run too (bf16 on this machine).
    monkeypatch.setattr(runtime, "detect_hardware", lambda: CPU_BF16)
    out = tmp_path / "result.json"
    assert benchmark.main(["--allow-cpu", "--steps", "2", "--warmup-steps", "1", "--batch-size", "4",
                           "--max-seq-length", "16", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["model_config"] == "micro" and result["batch_size"] == 4 and result["max_seq_length"] == 16
    assert [r["name"] for r in result["results"]] == ["fp32", "fp32 + XLA", "bf16 mixed", "bf16 mixed + XLA"]
    for row in result["results"]:
        assert "error" not in row, row
        assert row["samples_per_sec"] > 0 and row["ms_per_step"] > 0
        assert row["encoder"]["hidden_size"] == 64  # the micro preset
    assert result["article"]["samples_per_sec"] == 23.0 and result["article"]["batch_size"] == 64
    assert "article" in printed and "ALBERT-base" in printed and "K80" in printed
    assert keras.mixed_precision.global_policy().name == "float32"


def test_gpu_benchmark_settings_follow_the_compute_capability():
    benchmark = load_benchmark()
    names = lambda hardware: [s["name"] for s in benchmark.settings_for(hardware)[0]]  # noqa: E731
    assert names(gpus((8, 6)))[2:] == ["bf16 mixed", "bf16 mixed + XLA"]
    assert names(gpus((7, 0)))[2:] == ["fp16 mixed", "fp16 mixed + XLA"]
    settings, skipped = benchmark.settings_for(gpus((3, 7)))
    assert [s["name"] for s in settings] == ["fp32", "fp32 + XLA"] and "no tensor cores" in skipped[0]


# ----------------------------------------------------------------------------- notebook 02's chart
def test_throughput_chart_names_the_setting_and_what_differs(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from albert_ner.workshop import plots, runs

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model_config.json").write_text(json.dumps({
        "encoder": {"model_type": "chars", "hidden_size": 128, "num_hidden_layers": 0},
        "head": "crf", "num_tags": 7, "max_seq_length": 64, "lstm_units": 128}))
    (model_dir / "training_args.json").write_text(json.dumps({
        "precision": "auto", "precision_used": "fp32", "batch_size": 64, "max_seq_length": 64}))
    (model_dir / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "loss": 1.0, "samples_per_sec": r}) + "\n" for s, r in ((10, 90.0), (20, 110.0), (30, 100.0))))
    entry = runs.throughput_entry(model_dir, device="CPU test box, 2 cores")
    assert entry == {"samples_per_sec": 100.0, "device": "CPU test box, 2 cores",
                     "model": "chars BiLSTM(128)-CRF, emb 128", "precision": "fp32",
                     "batch_size": 64, "max_seq_length": 64}
    assert plots.throughput_differences(entry) == ["device", "model size", "batch/seq"]

    fig = plots.plot_throughput({"this run": entry})
    ax = fig.axes[0]
    assert "NOT like for like" in ax.get_title() and "model size" in ax.get_title()
    annotations = [t.get_text() for t in ax.texts]
    assert any("CPU test box" in t and "chars BiLSTM(128)-CRF" in t and "fp32" in t and "B=64, T=64" in t
               for t in annotations)
    assert any("K80" in t and "ALBERT 12 layers x 768" in t and "fp32 (assumed)" in t and "B=64, T=128" in t
               for t in annotations)
    assert plots.save_figure(fig, tmp_path / "throughput.png").stat().st_size > 1000

    # The same setting as the article's: the title says so instead.
    same = {k: v for k, v in plots.ARTICLE_THROUGHPUT.items() if k != "precision_note"}
    assert plots.throughput_differences(same) == []
    assert "same device" in plots.plot_throughput({"rerun": dict(same, samples_per_sec=30.0)}).axes[0].get_title()
    # A bare rate (older callers) still draws, with every condition counted as different.
    assert len(plots.throughput_differences({"samples_per_sec": 5.0})) == 4
    assert "NOT like for like" in plots.plot_throughput({"run": 12.0}).axes[0].get_title()
