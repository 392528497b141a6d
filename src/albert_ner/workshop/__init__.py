"""Helpers behind the workshop notebooks (01 … 05) and `make workshop`.

The notebooks stay short: every reusable step lives here, with unit tests.

  environment       what this machine has: TensorFlow, GPUs, SageMaker SDK, Docker, credentials
  data              get the corpus (MSRA download with sha256, a local copy, or generated),
                    validate it, stage the `training` / `validation` channels (local and S3)
  display           tables (pandas) and entity highlighting as HTML
  plots             corpus plots, training curves, the article's published curve
  runs              a run registry shared by the notebooks; metrics of every run, SageMaker
                    artefacts (model.tar.gz) unpacked back into model directories
  analysis          entity-level error taxonomy, type confusion, worst sentences
  safety            redact account ids and credentials before anything is printed
  papermill_runner  execute the notebooks in order and write an HTML handout
"""
