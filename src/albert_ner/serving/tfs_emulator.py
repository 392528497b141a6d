"""A local stand-in for the SageMaker TensorFlow Serving container, for tests and notebooks.

It serves a TF Serving package (`albert-ner export --tfs-package`: model.tar.gz or its
extracted directory) the way the container does, on one loopback port:

  POST /v1/models/<name>[/versions/<v>]:predict   TF Serving's REST predict API, row format:
       {"signature_name"?: ..., "instances": [...]} → {"predictions": [...]}; errors are
       {"error": "..."} with status 400 (bad request) or 404 (unknown model or signature)
  GET  /v1/models/<name>                           model status (AVAILABLE)
  GET  /ping                                       200 (the model is loaded before listening)
  POST /invocations                                the container's front: code/inference.py's
       input_handler → POST to the :predict URL above → output_handler, with the
       container's Context fields; a handler exception becomes 500 {"error": str(e)}

What it does not emulate: gRPC, the columnar {"inputs": ...} format, TF Serving's own
batching, several models. The SavedModel runs in this process's TensorFlow, which the
container does not have: the handlers themselves still see only the HTTP answer.

Example (a notebook cell):
  from albert_ner.serving.tfs_emulator import TFServingEmulator
  with TFServingEmulator("runs/model.tar.gz") as tfs:
      print(tfs.url, tfs.predict_url)      # http://127.0.0.1:PORT, .../v1/models/model:predict
      # POST text to f"{tfs.url}/invocations" as to the SageMaker endpoint

Command line (serves until Ctrl-C or SIGTERM):
  python -m albert_ner.serving.tfs_emulator runs/model.tar.gz --port 8080
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import io
import json
import re
import shutil
import signal
import sys
import tarfile
import tempfile
import threading
import traceback
import urllib.error
import urllib.request
from collections import namedtuple
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DEFAULT_MODEL_NAME = "model"  # what the container names the model under /opt/ml/model
# The container's request context (tfs_utils.Context in the SageMaker TF Serving container).
Context = namedtuple(
    "Context",
    "model_name, model_version, method, rest_uri, grpc_port, channel, custom_attributes, "
    "request_content_type, accept_header, content_length",
)
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
_PREDICT_PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?:(\w+)$")


class EmulatorError(Exception):
    """A TF Serving REST error: status and message (sent as {"error": message})."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class TFServingResponse:
    """What output_handler receives: the parts of `requests.Response` handlers use."""

    def __init__(self, status_code: int, content: bytes, headers: dict):
        self.status_code = status_code
        self.content = content
        self.headers = headers

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self):
        return json.loads(self.content)


# ---------------------------------------------------------------------------- the package
def find_version_dir(root: Path) -> Path:
    """The highest numeric subdirectory of `root` holding a saved_model.pb."""
    versions = [d for d in root.iterdir() if d.is_dir() and d.name.isdigit() and (d / "saved_model.pb").exists()]
    if not versions:
        raise FileNotFoundError(f"{root}: no <version>/saved_model.pb (e.g. 1/saved_model.pb)")
    return max(versions, key=lambda d: int(d.name))


def load_handlers(script: Path):
    """Imports code/inference.py as the container does; returns (input_handler, output_handler)."""
    spec = importlib.util.spec_from_file_location("inference", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not (hasattr(module, "input_handler") and hasattr(module, "output_handler")):
        raise ValueError(f"{script} must define input_handler and output_handler")
    return module.input_handler, module.output_handler


class SavedModelServable:
    """One SavedModel behind the REST predict API (row format)."""

    def __init__(self, version_dir: Path, name: str = DEFAULT_MODEL_NAME):
        import tensorflow as tf  # the emulator needs TF; the handlers never do

        self.tf = tf
        self.name, self.version = name, version_dir.name
        self.loaded = tf.saved_model.load(str(version_dir))
        self.signatures = dict(self.loaded.signatures)

    def predict(self, request: dict) -> dict:
        """{"instances": [...], "signature_name"?} → {"predictions": [...]}.

        Raises:
          EmulatorError: 400 for a malformed request, 404 for an unknown signature.
        """
        if not isinstance(request, dict):
            raise EmulatorError(400, "JSON Value: request body is not an object")
        if "instances" not in request:
            if "inputs" in request:
                raise EmulatorError(400, "the emulator supports only the row format ({\"instances\": [...]})")
            raise EmulatorError(400, 'Missing "instances" key')
        name = request.get("signature_name", "serving_default")
        signature = self.signatures.get(name)
        if signature is None:
            raise EmulatorError(404, f"Serving signature name: \"{name}\" not found in signature def")
        instances = request["instances"]
        if not isinstance(instances, list) or not instances:
            raise EmulatorError(400, '"instances" must be a non-empty list')
        specs = signature.structured_input_signature[1]  # {input name: TensorSpec}
        columns = self._columns(instances, specs)
        tf = self.tf
        try:
            inputs = {
                key: tf.constant(values, dtype=specs[key].dtype) for key, values in columns.items()
            }
            outputs = signature(**inputs)
        except (ValueError, TypeError, tf.errors.InvalidArgumentError) as err:
            raise EmulatorError(400, f"cannot run the model on these instances: {err}") from None
        arrays = {key: value.numpy() for key, value in outputs.items()}
        rows = len(instances)
        predictions = []
        for row in range(rows):
            values = {key: _json_value(key, array[row]) for key, array in arrays.items()}
            predictions.append(next(iter(values.values())) if len(values) == 1 else values)
        return {"predictions": predictions}

    @staticmethod
    def _columns(instances: list, specs: dict) -> dict:
        """Row-format instances → one list of values per input (binary via {"b64": ...})."""
        names = list(specs)
        columns = {key: [] for key in names}
        for i, instance in enumerate(instances):
            if len(names) == 1 and not (isinstance(instance, dict) and set(instance) == set(names)):
                instance = {names[0]: instance}
            if not isinstance(instance, dict) or set(instance) != set(names):
                raise EmulatorError(400, f"instance {i}: expected an object with keys {names}")
            for key in names:
                value = instance[key]
                if isinstance(value, dict) and set(value) == {"b64"}:
                    value = base64.b64decode(value["b64"])
                elif isinstance(value, str):
                    value = value.encode("utf-8")
                columns[key].append(value)
        return columns


def _json_value(name: str, value):
    """A numpy value as TF Serving writes it: strings as text (base64 for *_bytes outputs)."""
    if isinstance(value, bytes):
        if name.endswith("_bytes"):
            return {"b64": base64.b64encode(value).decode("ascii")}
        return value.decode("utf-8", errors="replace")
    if getattr(value, "dtype", None) is not None and value.dtype.kind in "SO":
        if value.ndim == 0:
            return _json_value(name, value.item())
        return [_json_value(name, v) for v in value]
    return value.tolist() if hasattr(value, "tolist") else value


# ---------------------------------------------------------------------------- HTTP
class _Handler(BaseHTTPRequestHandler):
    server: "_EmulatorHTTPServer"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        servable = self.server.servable
        if self.path == "/ping":
            self._send(200, b"", "application/json")
        elif self.path.rstrip("/") == f"/v1/models/{servable.name}":
            self._send_json(200, {"model_version_status": [{
                "version": servable.version, "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }]})
        else:
            self._send_json(404, {"error": f"no route GET {self.path}"})

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/invocations":
            self._invoke(body)
            return
        match = _PREDICT_PATH.match(self.path)
        servable = self.server.servable
        try:
            if not match:
                raise EmulatorError(404, f"Malformed request: POST {self.path}")
            name, version, method = match.groups()
            if name != servable.name or (version and version != servable.version):
                raise EmulatorError(404, f"Servable not found for request: Specific({name}, {version})")
            if method != "predict":
                raise EmulatorError(400, f"the emulator supports only :predict, not :{method}")
            try:
                request = json.loads(body)
            except ValueError as err:
                raise EmulatorError(400, f"JSON Parse error: {err}") from None
            self._send_json(200, servable.predict(request))
        except EmulatorError as err:
            self._send_json(err.status, {"error": err.message})
        except Exception as err:  # noqa: BLE001 — answer, log, keep serving
            traceback.print_exc()
            self._send_json(500, {"error": f"internal error: {err}"})

    def _invoke(self, body: bytes) -> None:
        """The container's /invocations: input_handler → TF Serving → output_handler."""
        if self.server.handlers is None:
            self._send_json(500, {"error": "the package has no code/inference.py"})
            return
        input_handler, output_handler = self.server.handlers
        context = Context(
            model_name=None, model_version=None, method="predict",
            rest_uri=self.server.predict_url, grpc_port=None, channel=None,
            custom_attributes=self.headers.get(CUSTOM_ATTRIBUTES_HEADER),
            request_content_type=self.headers.get("Content-Type") or "application/json",
            accept_header=self.headers.get("Accept") or "application/json",
            content_length=len(body),
        )
        try:
            processed = input_handler(io.BytesIO(body), context)
            response = _post(context.rest_uri, processed)
            answer, content_type = output_handler(response, context)
        except Exception as err:  # noqa: BLE001 — the container answers every failure this way
            if self.server.verbose:
                traceback.print_exc()
            self._send_json(500, {"error": str(err)})
            return
        if isinstance(answer, str):
            answer = answer.encode("utf-8")
        self._send(200, answer, content_type)

    def _send_json(self, status: int, value) -> None:
        self._send(status, json.dumps(value, ensure_ascii=False).encode("utf-8"), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args) -> None:  # noqa: A002
        if self.server.verbose:
            sys.stderr.write(f"[tfs-emulator] {self.address_string()} {format % args}\n")


def _post(url: str, data) -> TFServingResponse:
    """POST like `requests.post(url, data=data)`; HTTP errors are answers, not exceptions."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    request = urllib.request.Request(url, data=data, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=600) as answer:
            return TFServingResponse(answer.status, answer.read(), dict(answer.headers))
    except urllib.error.HTTPError as err:
        return TFServingResponse(err.code, err.read(), dict(err.headers))


class _EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, servable, handlers, verbose: bool):
        super().__init__(address, _Handler)
        self.servable, self.handlers, self.verbose = servable, handlers, verbose
        host, port = self.server_address[:2]
        self.predict_url = f"http://{host}:{port}/v1/models/{servable.name}:predict"


# ---------------------------------------------------------------------------- the emulator
class TFServingEmulator:
    """Serves a TF Serving package on 127.0.0.1 from a background thread.

    Args:
      package: model.tar.gz from `albert-ner export --tfs-package`, or a directory with
        `<version>/saved_model.pb` and (for /invocations) `code/inference.py`.
      host, port: where to listen; port 0 picks a free one.
      model_name: the name in TF Serving URLs.
      verbose: log requests and handler tracebacks to stderr.

    Use `start()`/`stop()` or a `with` block; `url` is the container front
    (/ping, /invocations), `predict_url` TF Serving's :predict.
    """

    def __init__(self, package, host: str = "127.0.0.1", port: int = 0,
                 model_name: str = DEFAULT_MODEL_NAME, verbose: bool = False):
        self.package = Path(package)
        self.host, self.port, self.model_name, self.verbose = host, port, model_name, verbose
        self._tmp: str | None = None
        self._server: _EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> "TFServingEmulator":
        """Extracts the package (if a tarball), loads the model and the handlers, listens."""
        if not self.package.exists():
            raise FileNotFoundError(f"{self.package}: no such package or directory")
        root = self.package
        if root.is_file():
            self._tmp = tempfile.mkdtemp(prefix="tfs-emulator-")
            with tarfile.open(root) as tar:
                tar.extractall(self._tmp, filter="data")
            root = Path(self._tmp)
        try:
            servable = SavedModelServable(find_version_dir(root), self.model_name)
            script = root / "code" / "inference.py"
            handlers = load_handlers(script) if script.exists() else None
            self._server = _EmulatorHTTPServer((self.host, self.port), servable, handlers, self.verbose)
        except BaseException:
            self._cleanup()
            raise
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="tfs-emulator", daemon=True
        )
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def predict_url(self) -> str:
        return self._server.predict_url

    def stop(self) -> None:
        """Stops listening, waits for the serving thread and removes the extracted files."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self._server = None
        self._cleanup()

    def _cleanup(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> "TFServingEmulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m albert_ner.serving.tfs_emulator",
        description="Serve a TF Serving package locally: TF Serving's REST :predict plus the "
        "SageMaker container's /ping and /invocations (running code/inference.py).",
    )
    parser.add_argument("package", help="model.tar.gz from `albert-ner export --tfs-package`, or its extracted directory")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (0 = any free port; default 8080)")
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME, help="model name in TF Serving URLs")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args(argv)
    try:
        emulator = TFServingEmulator(args.package, args.host, args.port, args.model_name,
                                     verbose=not args.quiet).start()
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    def stop(signum, frame):
        raise KeyboardInterrupt

    # SIGTERM (e.g. from a notebook's subprocess.terminate) stops as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, stop)
    print(f"listening on {emulator.url} (TF Serving: {emulator.predict_url})", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
