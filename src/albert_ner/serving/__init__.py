"""Inference serving: the SageMaker hosting contract (`/ping`, `/invocations`) over `Predictor`.

See `albert_ner.serving.http_app`; the container runs it as `container/serve`.
"""
