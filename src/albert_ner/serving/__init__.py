"""Inference serving: SageMaker's hosting contract (`/ping`, `/invocations`) over `Predictor`.

  requests.py   request bodies → records, predictions → response bodies (pure functions)
  batcher.py    the model thread: load, warm up, merge concurrent requests (dynamic batching)
  app.py        the starlette routes, status codes and the per-request log line
  settings.py   options and their SAGEMAKER_* / ALBERT_NER_* environment variables
  server.py     uvicorn start-up, workers and SIGTERM (`albert-ner serve`, container/serve)
  readiness.py  /ping across worker processes: a shared directory of ready/failed files
  supervisor.py the parent of several workers: replaces a dead one, prunes its readiness file
  batch.py      offline batch transform: `albert-ner predict` on a file, streamed in chunks
  loadtest.py   concurrent HTTP load against a running server (benchmarks, notebook 06)

Importing this package imports neither starlette nor TensorFlow.
"""
