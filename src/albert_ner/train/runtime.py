"""What a run executes on, and the numeric settings that follow from it.

`albert-ner train` and `albert-ner pretrain` share this module (and so do the SageMaker
entrypoints and notebooks, which end in the same loops):

  detect_hardware()        the GPUs TensorFlow sees (with compute capability) and the CPU flags;
  resolve_precision()      `--precision auto|fp32|bf16|fp16` → the precision to use, and why;
  resolve_determinism()    `--deterministic auto|on|off` → whether to enable op determinism, and why;
  set_precision()          installs the Keras mixed-precision policy (returns the previous one);
  unscale()                gradient / loss scale, for the dynamic loss scaling of fp16 runs
                           (train.loss_scale; its starting scale and growth interval are here);
  format_eta()             H:MM:SS for progress lines.

The hardware is described by a plain `Hardware` value, so every decision can be tested with
made-up machines; only `detect_hardware` looks at the real one.
"""

from __future__ import annotations

import dataclasses
import os

PRECISIONS = ("fp32", "bf16", "fp16")
PRECISION_CHOICES = ("auto", *PRECISIONS)
DETERMINISM_CHOICES = ("auto", "on", "off")

# Keras policy per precision. Mixed policies keep the variables in float32 and compute in the
# low precision; the CRF and the MLM head stay float32 whatever the policy (see model/).
KERAS_POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}

# CPU flags (as /proc/cpuinfo spells them) of instructions that make bf16 matrix products
# fast. Without them oneDNN emulates bf16 and a step gets slower, not faster.
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")

# Compute capabilities: Ampere (8.0) and newer have bf16 tensor cores; Volta/Turing (7.x)
# have fp16 tensor cores only; older GPUs have neither.
BF16_MIN_CAPABILITY = (8, 0)
FP16_MIN_CAPABILITY = (7, 0)

# fp16's narrow exponent range loses small gradients: the loss is multiplied by a scale before
# differentiation and the gradients divided by it afterwards (bf16 has fp32's range). The
# scale is dynamic (train.loss_scale): halved on every step whose gradients overflow (the step
# is skipped), doubled after FP16_LOSS_SCALE_GROWTH_STEPS finite steps in a row. The values
# are Keras' LossScaleOptimizer defaults (PyTorch's GradScaler: 2**16 and 2000), and they suit
# this project's runs:
#   * 2**15 to start: a scale too high costs one skipped step per halving (2**15 down to 2**10
#     is 5 steps), and those fall in the learning-rate warm-up, where steps are small anyway;
#     a scale too low would flush small gradients to zero for 2000 steps per doubling.
#   * 2000 finite steps before trying a double: an attempt that overflows costs one skipped
#     step, so at most 1 step in 2000 (0.05 %) is lost to probing; a run of 3 MSRA epochs at
#     batch 32 (about 4,400 steps) tries twice, enough to win back a halving caused by one
#     unlucky batch.
FP16_INITIAL_LOSS_SCALE = 2.0**15
FP16_LOSS_SCALE_GROWTH_STEPS = 2000

# Why the CPU flags decide: ALBERT-tiny + CRF trains 1.47x faster in mixed bf16 on this
# project's AMD EPYC with AVX512-BF16 (BENCHMARKS.md), while issue 9 reports the same step
# about 2x SLOWER in bf16 on a CPU without the instructions (11 instead of 22 samples/s).
#
# The BiLSTM-CRF over character + bigram embeddings (model_config "chars") is not a
# transformer: its cost is a 128-unit LSTM stepping through time and embedding lookups, not
# large matrix products. Measured for issue 9 on the same AVX512-BF16 CPU (shared with other
# jobs, load average 5-7 on 2 cores), the recipe's defaults on 8,000 MSRA sentences, one fp32
# and one bf16 Trainer in one process timed in alternating blocks of 8 steps, median per block:
#   batch 64, seq 64:  12 blocks fp32 141.2, bf16 140.5 samples/s (bf16/fp32 1.00);
#                       6 blocks fp32 175.8, bf16 196.4 (1.12)
#   batch 32, seq 128: 12 blocks fp32 67.2, bf16 65.9 (0.98); 6 blocks fp32 142.9, bf16 123.4 (0.86)
# No gain beyond the noise, so `auto` keeps it in fp32 (also the safer numerics for the LSTM).
SEQUENCE_MODEL_TYPES = ("chars",)


@dataclasses.dataclass(frozen=True)
class GPU:
    """One GPU as TensorFlow sees it."""

    name: str
    compute_capability: tuple[int, int] | None = None  # None: TensorFlow did not say (e.g. ROCm)

    def describe(self) -> str:
        if self.compute_capability is None:
            return f"{self.name} (compute capability unknown)"
        return f"{self.name} (compute capability {self.compute_capability[0]}.{self.compute_capability[1]})"


@dataclasses.dataclass(frozen=True)
class Hardware:
    """The devices a run can use: GPUs visible to TensorFlow and the CPU's feature flags."""

    gpus: tuple[GPU, ...] = ()
    cpu_flags: frozenset[str] | None = None  # None: unknown (no /proc/cpuinfo, e.g. macOS)
    cpu_name: str | None = None

    @property
    def has_gpu(self) -> bool:
        return bool(self.gpus)

    @property
    def cpu_bf16(self) -> tuple[str, ...]:
        """The bf16 instruction-set flags this CPU has (empty when it has none or unknown)."""
        return tuple(flag for flag in CPU_BF16_FLAGS if flag in (self.cpu_flags or ()))

    def min_compute_capability(self) -> tuple[int, int] | None:
        """The lowest capability among the GPUs: every replica runs the same policy.

        None when any GPU's capability is unknown (or there is no GPU).
        """
        capabilities = [g.compute_capability for g in self.gpus]
        if not capabilities or any(c is None for c in capabilities):
            return None
        return min(capabilities)

    def describe(self) -> str:
        """One line naming the device a run trains on, e.g. for a chart label."""
        if self.gpus:
            names = sorted({g.describe() for g in self.gpus})
            count = f"{len(self.gpus)}× " if len(self.gpus) > 1 else ""
            return f"GPU {count}{', '.join(names)}"
        cores = os.cpu_count() or 0
        flags = "+".join(f.upper().replace("_", "-") for f in self.cpu_bf16) or "no bf16 instructions"
        name = self.cpu_name or "CPU"
        return f"CPU {name}, {cores} cores, {flags}"


@dataclasses.dataclass(frozen=True)
class Choice:
    """A resolved setting and the reason for it, printed as one log line."""

    value: object
    reason: str


# ---------------------------------------------------------------------------- detection
def cpu_flags_from_cpuinfo(text: str) -> frozenset[str]:
    """The feature flags in the text of /proc/cpuinfo (x86 `flags`, ARM `Features` lines).

    Every processor repeats its line; a flag counts when any line lists it (they agree on
    real machines).
    """
    flags: set[str] = set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return frozenset(flags)


def cpu_name_from_cpuinfo(text: str) -> str | None:
    """The first `model name` in /proc/cpuinfo text, or None."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == "model name" and value.strip():
            return value.strip()
    return None


def _read_cpuinfo(path: str = "/proc/cpuinfo") -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:  # not Linux, or a sandbox without /proc
        return None


def detect_gpus() -> tuple[GPU, ...]:
    """The GPUs TensorFlow sees, with their compute capability; () on CPU-only TensorFlow.

    Never raises: a TensorFlow build without GPU support lists no GPUs, and a device whose
    details cannot be read is reported with an unknown capability.
    """
    try:
        import tensorflow as tf

        devices = tf.config.list_physical_devices("GPU")
    except Exception:  # noqa: BLE001 - a broken CUDA setup must not stop a CPU run
        return ()
    gpus = []
    for device in devices:
        try:
            details = tf.config.experimental.get_device_details(device) or {}
        except Exception:  # noqa: BLE001 - details are optional; the GPU still counts
            details = {}
        capability = details.get("compute_capability")
        gpus.append(GPU(
            name=str(details.get("device_name") or device.name),
            compute_capability=tuple(int(x) for x in capability) if capability else None,
        ))
    return tuple(gpus)


def detect_hardware(cpuinfo_path: str = "/proc/cpuinfo") -> Hardware:
    """This machine: TensorFlow's GPUs and the CPU flags (unknown off Linux).

    The flags are those oneDNN may use: with ONEDNN_MAX_CPU_ISA capping it below the bf16
    instructions, they are left out (see `flags_within_onednn_cap`).
    """
    text = _read_cpuinfo(cpuinfo_path)
    flags = cpu_flags_from_cpuinfo(text) if text is not None else None
    return Hardware(
        gpus=detect_gpus(),
        cpu_flags=flags_within_onednn_cap(flags, os.environ.get("ONEDNN_MAX_CPU_ISA")),
        cpu_name=cpu_name_from_cpuinfo(text) if text is not None else None,
    )


# oneDNN's ISA names (ONEDNN_MAX_CPU_ISA) that stop below AVX512-BF16. With one of them set,
# TensorFlow's oneDNN kernels may not use the bf16 instructions the CPU reports: choosing
# bf16 then emulates it (slow) or, for some kernels in TF 2.21, crashes (seen: a
# segmentation fault in the first Dense matmul of a bf16 model under ONEDNN_MAX_CPU_ISA=AVX2).
# The cap is also how this project rehearses a machine without AVX-512 on one that has it.
ONEDNN_ISAS_WITHOUT_BF16 = frozenset(
    {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}
)


def flags_within_onednn_cap(flags: frozenset[str] | None, max_isa: str | None) -> frozenset[str] | None:
    """`flags` less the AVX-512/AMX ones oneDNN may not use under ONEDNN_MAX_CPU_ISA=`max_isa`."""
    if flags is None or not max_isa:
        return flags
    isa = max_isa.strip().upper()
    if isa not in ONEDNN_ISAS_WITHOUT_BF16:
        return flags
    if isa.startswith("AVX512"):  # AVX-512 itself stays; only its bf16 extension is capped
        return frozenset(f for f in flags if f not in CPU_BF16_FLAGS and not f.startswith("amx"))
    return frozenset(f for f in flags if not f.startswith(("avx512", "amx")))


# ---------------------------------------------------------------------------- decisions
def check_precision(choice: str) -> str:
    """`choice` if it is a known --precision value, else a ValueError naming the choices."""
    if choice not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {choice!r}")
    return choice


def resolve_precision(choice: str, model_type: str, hardware: Hardware | None = None) -> Choice:
    """The precision a run uses (fp32, bf16 or fp16) and why.

    Args:
      choice: "auto", or an explicit "fp32" / "bf16" / "fp16" (kept as given).
      model_type: the encoder's model_type ("albert", "bert", "chars"), known once the
        recipe defaults are filled in.
      hardware: the machine (default: `detect_hardware()`).
    Returns:
      Choice(value=precision, reason=one line for the log).
    """
    check_precision(choice)
    hardware = detect_hardware() if hardware is None else hardware
    if choice != "auto":
        return Choice(choice, f"set explicitly{_explicit_note(choice, hardware)}")
    if model_type in SEQUENCE_MODEL_TYPES:
        return Choice("fp32", f"auto: the {model_type!r} BiLSTM-CRF recipe (small LSTM steps, not "
                              "large matrix products) measured no faster in mixed bf16 than in fp32")
    if hardware.has_gpu:
        return _gpu_precision(hardware)
    bf16 = hardware.cpu_bf16
    if bf16:
        names = "/".join(f.upper().replace("_", "-") for f in bf16)
        return Choice("bf16", f"auto: no GPU; the CPU has {names}, where mixed bf16 trains a "
                              "transformer about 1.47x faster")
    if hardware.cpu_flags is None:
        return Choice("fp32", "auto: no GPU and the CPU's flags are unknown (no /proc/cpuinfo); "
                              "bf16 without AVX512-BF16/AMX-BF16 is about 2x slower")
    return Choice("fp32", "auto: no GPU and the CPU has no AVX512-BF16/AMX-BF16, where bf16 is "
                          "emulated and about 2x slower than fp32")


def _gpu_precision(hardware: Hardware) -> Choice:
    capability = hardware.min_compute_capability()
    if capability is None:
        return Choice("fp32", "auto: a GPU whose compute capability TensorFlow does not report; "
                              "fp32 is safe everywhere")
    shown = f"{capability[0]}.{capability[1]}"
    if capability >= BF16_MIN_CAPABILITY:
        return Choice("bf16", f"auto: GPU compute capability {shown} (≥ 8.0, Ampere or newer) "
                              "has bf16 tensor cores")
    if capability >= FP16_MIN_CAPABILITY:
        return Choice("fp16", f"auto: GPU compute capability {shown} (7.x) has fp16 tensor cores "
                              f"but no bf16; fp16 with dynamic loss scaling (from {FP16_INITIAL_LOSS_SCALE:g}, "
                              "overflowing steps skipped)")
    return Choice("fp32", f"auto: GPU compute capability {shown} (< 7.0) has no tensor cores; "
                          "mixed precision would not be faster")


def _explicit_note(precision: str, hardware: Hardware) -> str:
    """A warning when an explicit precision is known to be slow on this hardware ('' if not)."""
    if precision == "bf16" and not hardware.has_gpu and hardware.cpu_flags is not None and not hardware.cpu_bf16:
        return "; note: this CPU has no AVX512-BF16/AMX-BF16, where bf16 measured about 2x slower than fp32"
    if precision == "bf16" and hardware.has_gpu:
        capability = hardware.min_compute_capability()
        if capability is not None and capability < BF16_MIN_CAPABILITY:
            return "; note: GPUs before compute capability 8.0 have no bf16 tensor cores (fp16 is faster there)"
    return ""


def normalize_determinism(value) -> str:
    """"auto", "on" or "off" from a --deterministic value, old booleans included.

    Before `auto` existed the setting was a boolean (`deterministic: true/false` in SageMaker
    hyperparameters, `TrainArgs(deterministic=False)`); those keep working.
    """
    if isinstance(value, bool):
        return "on" if value else "off"
    text = str(value).strip().lower()
    if text in DETERMINISM_CHOICES:
        return text
    if text in ("true", "1", "yes"):
        return "on"
    if text in ("false", "0", "no"):
        return "off"
    raise ValueError(f"deterministic must be auto, on or off (or true/false), got {value!r}")


def resolve_determinism(choice, hardware: Hardware | None = None) -> Choice:
    """Whether to enable TensorFlow op determinism (Choice.value is a bool), and why.

    auto: on for CPU runs (bit-identical reruns and resumes), off when a GPU is visible —
    some GPU kernels have no deterministic version and raise when determinism is required.
    """
    choice = normalize_determinism(choice)
    if choice != "auto":
        return Choice(choice == "on", "set explicitly")
    hardware = detect_hardware() if hardware is None else hardware
    if hardware.has_gpu:
        return Choice(False, "auto: a GPU is visible and some GPU kernels have no deterministic "
                             "version; reruns may differ in the last bits (--deterministic on to insist)")
    return Choice(True, "auto: CPU only, so reruns and resumes are bit-identical")


# ---------------------------------------------------------------------------- applying them
def set_precision(precision: str) -> str:
    """Installs the Keras global policy for `precision`; returns the previous policy's name.

    The policy is process-wide and layers take it when they are built, so call this before
    building the model, and put the returned name back when the run ends.
    """
    import keras

    if precision not in KERAS_POLICIES:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(KERAS_POLICIES[precision])
    return previous


def restore_policy(name: str) -> None:
    """Puts back a policy returned by `set_precision`."""
    import keras

    keras.mixed_precision.set_global_policy(name)


def unscale(grad, scale):
    """grad / scale (a number or a scalar tensor); embedding gradients arrive as IndexedSlices,
    which `/` does not take."""
    import tensorflow as tf

    if isinstance(grad, tf.IndexedSlices):
        return tf.IndexedSlices(grad.values / scale, grad.indices, grad.dense_shape)
    return grad / scale


def format_eta(seconds: float) -> str:
    """H:MM:SS (negative counts as zero)."""
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
