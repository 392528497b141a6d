"""Runs a SageMaker training job as local processes: the platform around the container, no Docker.

For each host (algo-1, algo-2, ...) the runner lays out that host's `/opt/ml` tree under
JOB_DIR/<host>/, copies the channels into input/data/, writes the three config files (string
hyperparameters, as the platform does), sets the variables the platform sets, and starts

  * BYOC: the image's `train` entrypoint (container/train), which reads only the tree;
  * BYOS: `python ENTRY_SCRIPT --key value ...` in the staged source dir, with the SM_*
    variables of script mode (and the extra `--model_dir` argument it may add).

Then it packs the chief's model/ into JOB_DIR/model.tar.gz and output/data/ into
JOB_DIR/output.tar.gz, and reports each host's exit code and output/failure line.

With instance_count > 1 every host is a process on 127.0.0.1 with its own free port, so the
MultiWorkerMirroredStrategy path runs for real.

With `image=` the one host runs in that Docker image instead, exactly as SageMaker starts it:
`docker run IMAGE train` with the host's input/, model/ and output/ (and checkpoints/)
mounted under /opt/ml. (SageMaker SDK local mode does the same through docker compose; see
albert_ner.workshop.jobs.) A `checkpoint_dir` stands in for the S3
checkpoint location: each host's /opt/ml/checkpoints links to it, and it survives the job,
as S3 does across spot interruptions.

  python -m albert_ner.sagemaker.local_runner --job-dir /tmp/job --channel training=data/ \\
      --hp model_config=micro --hp max_steps=60 [--mode byos] [--instance-count 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from albert_ner.sagemaker.contract import ENV_BASE_DIR, ENV_WORKER_ADDRESSES, stringify_hyperparameters

REPO_TRAIN_ENTRYPOINT = Path(__file__).resolve().parents[3] / "container" / "train"


def default_train_command() -> list[str]:
    """The image's `train` entrypoint: container/train in a checkout, else the same module."""
    if REPO_TRAIN_ENTRYPOINT.exists():
        return [sys.executable, str(REPO_TRAIN_ENTRYPOINT), "train"]
    return [sys.executable, "-m", "albert_ner.sagemaker.job", "train"]


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclasses.dataclass
class JobResult:
    """How a local job ended."""

    job_dir: Path
    exit_codes: dict  # host → exit code
    failures: dict  # host → the line in its output/failure
    model_tar: Path | None
    output_tar: Path | None

    @property
    def ok(self) -> bool:
        return all(code == 0 for code in self.exit_codes.values())

    @property
    def failure(self) -> str | None:
        """The job's FailureReason: the first host's failure line, if any."""
        return next(iter(self.failures.values()), None)

    def host_root(self, host: str = "algo-1") -> Path:
        return self.job_dir / host


class LocalJob:
    """One training job; `start()` launches the host processes, `wait()` collects the result."""

    def __init__(
        self,
        job_dir: str | Path,
        hyperparameters: dict,
        channels: dict,
        *,
        mode: str = "byoc",
        instance_count: int = 1,
        source_dir: str | Path | None = None,
        entry_script: str = "entry_point.py",
        train_command: list[str] | None = None,
        checkpoint_dir: str | Path | None = None,
        environment: dict | None = None,
        instance_type: str = "local",
        job_name: str = "albert-ner-local",
        image: str | None = None,
        docker_options: list[str] | None = None,
    ):
        """
        Args:
          job_dir: where the hosts' trees, logs and the packed outputs go (created).
          hyperparameters: name → value; non-strings are JSON-encoded like the SDK does.
          channels: name → local directory (or single file) copied into input/data/<name>.
          mode: "byoc" (run the image's `train`) or "byos" (run `entry_script`).
          instance_count: hosts; >1 makes a multi-worker job on 127.0.0.1.
          source_dir: BYOS: the staged source dir (source_dir.stage_source_dir); BYOC: files
            baked into the image's /opt/ml/code (optional).
          train_command: BYOC command (default: python container/train train).
          checkpoint_dir: persistent stand-in for the S3 checkpoint location.
          environment: extra environment variables for every host.
          image: BYOC only, one host: run `docker run IMAGE train` instead of a local process.
          docker_options: extra `docker run` options with `image` (e.g. ["--cpus", "1"]).
        """
        if mode not in ("byoc", "byos"):
            raise ValueError(f"mode must be byoc or byos, got {mode!r}")
        if mode == "byos" and source_dir is None:
            raise ValueError("mode byos needs source_dir (see source_dir.stage_source_dir)")
        if instance_count < 1:
            raise ValueError("instance_count must be at least 1")
        if image and (mode != "byoc" or instance_count != 1):
            raise ValueError("image: one BYOC host only (several hosts: SageMaker local mode, "
                             "albert_ner.workshop.jobs.run_local(docker=True))")
        self.job_dir = Path(job_dir).resolve()
        self.hyperparameters = stringify_hyperparameters(hyperparameters)
        self.channels = {name: Path(path).resolve() for name, path in channels.items()}
        self.mode = mode
        self.hosts = [f"algo-{i + 1}" for i in range(instance_count)]
        self.source_dir = Path(source_dir).resolve() if source_dir else None
        self.entry_script = entry_script
        self.train_command = train_command
        self.checkpoint_dir = Path(checkpoint_dir).resolve() if checkpoint_dir else None
        self.environment = dict(environment or {})
        self.instance_type = instance_type
        self.job_name = job_name
        self.image = image
        self.docker_options = list(docker_options or [])
        self.processes: dict[str, subprocess.Popen] = {}
        self.containers: dict[str, str] = {}  # host → container name (image mode)

    # ------------------------------------------------------------------ layout
    def host_root(self, host: str) -> Path:
        return self.job_dir / host

    def _layout(self, host: str) -> Path:
        root = self.host_root(host)
        if root.exists():
            shutil.rmtree(root)  # a new job attempt gets a fresh machine
        config = root / "input" / "config"
        for directory in (config, root / "model", root / "output" / "data", root / "code"):
            directory.mkdir(parents=True)
        for name, source in self.channels.items():
            target = root / "input" / "data" / name
            if source.is_dir():
                shutil.copytree(source, target)
            elif source.is_file():
                target.mkdir(parents=True)
                shutil.copyfile(source, target / source.name)
            else:
                raise FileNotFoundError(f"channel {name}: {source} does not exist")
        if self.checkpoint_dir is not None:
            # One shared location per host, as SageMaker syncs each host's checkpoints to S3.
            shared = self.checkpoint_dir / host if len(self.hosts) > 1 else self.checkpoint_dir
            shared.mkdir(parents=True, exist_ok=True)
            if self.image is None:  # a container gets it mounted instead (a link would dangle)
                (root / "checkpoints").symlink_to(shared, target_is_directory=True)
        if self.source_dir is not None:
            code = root / ("input/data/code" if self.mode == "byos" else "code")
            shutil.copytree(self.source_dir, code, dirs_exist_ok=True)

        def write(name, value):
            (config / name).write_text(json.dumps(value, indent=2), encoding="utf-8")

        write("hyperparameters.json", self.hyperparameters)
        write("inputdataconfig.json", {
            name: {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated",
                   "RecordWrapperType": "None"} for name in self.channels
        })
        write("resourceconfig.json", {
            "current_host": host, "current_instance_type": self.instance_type,
            "current_group_name": "homogeneousCluster", "hosts": self.hosts,
            "instance_groups": [{"instance_group_name": "homogeneousCluster",
                                 "instance_type": self.instance_type, "hosts": self.hosts}],
            "network_interface_name": "lo",
        })
        return root

    def _script_mode_env(self, host: str, root: Path) -> dict:
        """The SM_* variables script mode gives the entry script (a subset that matters)."""
        hps = {k: _json_or_string(v) for k, v in self.hyperparameters.items()}
        env = {
            "SM_MODEL_DIR": str(root / "model"),
            "SM_INPUT_DIR": str(root / "input"),
            "SM_INPUT_DATA_DIR": str(root / "input" / "data"),
            "SM_INPUT_CONFIG_DIR": str(root / "input" / "config"),
            "SM_OUTPUT_DIR": str(root / "output"),
            "SM_OUTPUT_DATA_DIR": str(root / "output" / "data"),
            "SM_CHANNELS": json.dumps(sorted(self.channels)),
            "SM_HPS": json.dumps(hps),
            "SM_HOSTS": json.dumps(self.hosts),
            "SM_CURRENT_HOST": host,
            "SM_CURRENT_INSTANCE_TYPE": self.instance_type,
            "SM_NUM_GPUS": "0",
            "SM_NUM_CPUS": str(os.cpu_count() or 1),
            "SM_ENTRY_SCRIPT": self.entry_script,
            "SM_SOURCE_DIR": str(root / "input" / "data" / "code"),
        }
        for name in self.channels:
            env[f"SM_CHANNEL_{name.upper()}"] = str(root / "input" / "data" / name)
        for key, value in hps.items():
            env[f"SM_HP_{key.replace('-', '_').upper()}"] = value if isinstance(value, str) else json.dumps(value)
        env["SM_TRAINING_ENV"] = json.dumps({
            "hosts": self.hosts, "current_host": host, "channel_input_dirs": {
                n: env[f"SM_CHANNEL_{n.upper()}"] for n in self.channels},
            "hyperparameters": hps, "model_dir": env["SM_MODEL_DIR"], "job_name": self.job_name,
        })
        return env

    # ------------------------------------------------------------------ processes
    def start(self) -> "LocalJob":
        """Lays out every host and starts its process (they run concurrently)."""
        self.job_dir.mkdir(parents=True, exist_ok=True)
        for name in ("model.tar.gz", "output.tar.gz"):
            (self.job_dir / name).unlink(missing_ok=True)
        base_env = dict(os.environ, PYTHONUNBUFFERED="1", TRAINING_JOB_NAME=self.job_name)
        base_env.pop("TF_CONFIG", None)  # the contract builds it from the hosts
        base_env.update(self.environment)
        if len(self.hosts) > 1:
            ports = free_ports(len(self.hosts))
            base_env[ENV_WORKER_ADDRESSES] = json.dumps(
                {h: f"127.0.0.1:{p}" for h, p in zip(self.hosts, ports)})
        for host in self.hosts:
            root = self._layout(host)
            env = dict(base_env, **{ENV_BASE_DIR: str(root)})
            if self.mode == "byos":
                env.update(self._script_mode_env(host, root))
                args = []
                for key, value in self.hyperparameters.items():
                    args += [f"--{key}", value]
                # Script mode may append the S3 model location; the entry must accept it.
                args += ["--model_dir", f"s3://local-runner/{self.job_name}/model"]
                command = [sys.executable, self.entry_script, *args]
                cwd = root / "input" / "data" / "code"
            elif self.image is not None:
                command = self._docker_command(host, root)
                cwd = self.job_dir
            else:
                command = self.train_command or default_train_command()
                cwd = root / "code"
            log = open(self.job_dir / f"{host}.log", "w", encoding="utf-8")
            self.processes[host] = subprocess.Popen(
                command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
            log.close()  # the child holds its own descriptor
        return self

    def _docker_command(self, host: str, root: Path) -> list[str]:
        """`docker run IMAGE train` with the host's tree mounted where SageMaker mounts it.

        Not the whole /opt/ml: the image's own /opt/ml/code (the entrypoints) must stay."""
        name = f"{self.job_name}-{host}-{os.getpid()}-{int(time.time() * 1000) % 10**8}"
        self.containers[host] = name
        command = ["docker", "run", "--rm", "--name", name, "--hostname", host,
                   "-e", f"TRAINING_JOB_NAME={self.job_name}"]
        for key, value in self.environment.items():
            command += ["-e", f"{key}={value}"]
        for sub in ("input", "model", "output"):
            command += ["-v", f"{root / sub}:/opt/ml/{sub}"]
        if self.checkpoint_dir is not None:
            command += ["-v", f"{self.checkpoint_dir}:/opt/ml/checkpoints"]
        return command + self.docker_options + [self.image, "train"]

    def poll(self) -> dict:
        return {host: p.poll() for host, p in self.processes.items()}

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Sends `sig` to every host still running (a spot interruption: SIGKILL).

        In image mode the signal goes to the container (`docker kill`), whose main process
        is the entrypoint, as on SageMaker; the `docker run` client then ends with it."""
        for host, process in self.processes.items():
            if process.poll() is None:
                if host in self.containers:
                    subprocess.run(["docker", "kill", "--signal", signal.Signals(sig).name,
                                    self.containers[host]], capture_output=True, timeout=60)
                else:
                    process.send_signal(sig)
        for host, process in self.processes.items():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # ignored the polite signal
                if host in self.containers:
                    subprocess.run(["docker", "kill", self.containers[host]], capture_output=True, timeout=60)
                process.kill()
                process.wait()

    def wait(self, timeout: float | None = None) -> JobResult:
        """Waits for all hosts; a failed host ends the others, as the platform does."""
        deadline = None if timeout is None else time.time() + timeout
        failed_at = None
        while True:
            codes = self.poll()
            if all(code is not None for code in codes.values()):
                break
            if any(code not in (None, 0) for code in codes.values()):
                failed_at = failed_at or time.time()
                if time.time() - failed_at > 10:  # peers blocked in a collective never return
                    self.kill(signal.SIGTERM)
            if deadline is not None and time.time() > deadline:
                self.kill()
                raise TimeoutError(f"local job {self.job_dir} did not finish in {timeout} s")
            time.sleep(0.2)
        return self._collect(codes)

    def _collect(self, codes: dict) -> JobResult:
        failures = {}
        for host in self.hosts:
            failure = self.host_root(host) / "output" / "failure"
            if failure.exists():
                failures[host] = failure.read_text(encoding="utf-8").strip()
        chief = self.host_root(self.hosts[0])
        model_tar = None
        if all(code == 0 for code in codes.values()):
            model_tar = _pack(chief / "model", self.job_dir / "model.tar.gz")
        output_tar = _pack(chief / "output" / "data", self.job_dir / "output.tar.gz")
        return JobResult(self.job_dir, codes, failures, model_tar, output_tar)


def _json_or_string(value: str):
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _pack(directory: Path, target: Path) -> Path:
    """directory's contents → target .tar.gz with relative names (like model.tar.gz)."""
    with tarfile.open(target, "w:gz") as tar:
        for path in sorted(directory.iterdir()) if directory.exists() else []:
            tar.add(path, arcname=path.name)
    return target


def run_local_job(job_dir, hyperparameters: dict, channels: dict, timeout: float | None = None,
                  **options) -> JobResult:
    """Starts a LocalJob and waits for it (see LocalJob for the options)."""
    return LocalJob(job_dir, hyperparameters, channels, **options).start().wait(timeout)


# ---------------------------------------------------------------------------- CLI
def _pairs(values: list[str], what: str) -> dict:
    out = {}
    for value in values:
        if "=" not in value:
            raise SystemExit(f"error: {what} {value!r}: expected NAME=VALUE")
        name, _, rest = value.partition("=")
        out[name] = rest
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m albert_ner.sagemaker.local_runner",
        description="Run a SageMaker training job as local processes (no Docker).",
    )
    parser.add_argument("--job-dir", required=True, help="where host trees, logs and tarballs go")
    parser.add_argument("--channel", action="append", default=[], metavar="NAME=PATH",
                        help="input channel (repeat): training=DIR, validation=DIR")
    parser.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE",
                        help="hyperparameter (repeat); values are passed as strings")
    parser.add_argument("--hyperparameters-file", help="JSON object of hyperparameters")
    parser.add_argument("--mode", choices=["byoc", "byos"], default="byoc")
    parser.add_argument("--instance-count", type=int, default=1)
    parser.add_argument("--source-dir", help="BYOS: source dir (default: staged from this package)")
    parser.add_argument("--entry-script", default="entry_point.py")
    parser.add_argument("--checkpoint-dir", help="persistent checkpoint location (spot resume)")
    parser.add_argument("--timeout", type=float, help="seconds before the job is killed")
    args = parser.parse_args(argv)

    hyperparameters = {}
    if args.hyperparameters_file:
        hyperparameters = json.loads(Path(args.hyperparameters_file).read_text(encoding="utf-8"))
    hyperparameters.update(_pairs(args.hp, "--hp"))
    source_dir = args.source_dir
    if args.mode == "byos" and not source_dir:
        from albert_ner.sagemaker.source_dir import stage_source_dir

        source_dir = stage_source_dir(Path(args.job_dir) / "source")
    result = run_local_job(
        args.job_dir, hyperparameters, _pairs(args.channel, "--channel"), timeout=args.timeout,
        mode=args.mode, instance_count=args.instance_count, source_dir=source_dir,
        entry_script=args.entry_script, checkpoint_dir=args.checkpoint_dir,
    )
    for host, code in result.exit_codes.items():
        line = f"{host}: exit {code} (log {result.job_dir / (host + '.log')})"
        if host in result.failures:
            line += f"; failure: {result.failures[host]}"
        print(line)
    if result.model_tar:
        print(f"model: {result.model_tar}")
    print(f"output: {result.output_tar}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
