"""Running `albert_ner` as SageMaker training jobs.

  contract.py      the container side: /opt/ml tree, string hyperparameters, SM_* variables,
                   TF_CONFIG for multi-node, checkpoints for spot resume, the failure file
  job.py           runs one job on this host: plan → train → outputs, or output/failure
  entry_point.py   the script-mode (BYOS) entry: `--key value` arguments → the contract
  source_dir.py    stages the source directory a BYOS job uploads
  local_runner.py  reproduces the platform around a job as local processes (no Docker)
  launchers.py     ModelTrainer jobs (BYOC / BYOS / git source) — needs `pip install .[sagemaker]`

Only launchers.py imports the SageMaker SDK; everything that runs inside a job needs just
TensorFlow and this package.
"""
