"""The workshop's main job on a CPU-sized default: data → train → evaluate → predict.

`make workshop` runs this. It uses the MSRA corpus when $MSRA_DIR holds it (a slice, so it
finishes in minutes on two cores) and generated data otherwise, and leaves everything under
--run-dir: the data it used, the model directory, the test report and sample predictions.

  python -m albert_ner.quickstart --run-dir runs/workshop [--train-sentences 6000] [--steps 600]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

SAMPLES = [
    "国务院总理李鹏今天在北京会见了来访的日本外务大臣。",
    "新华社香港三月五日电，中国银行香港分行今天宣布扩大业务。",
    "张伟毕业于清华大学，现在在上海浦东新区工作。",
]


def stage_data(run_dir: Path, msra_dir: Path, train_sentences: int) -> dict:
    """Writes train/dev/test files under run_dir/data; returns their paths."""
    from albert_ner.data.readers import read_conll
    from albert_ner.data.synthetic import write_synthetic_split
    from albert_ner.data.writers import write_conll

    data_dir = run_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    if (msra_dir / "train.txt").exists():
        print(f"data: MSRA from {msra_dir} (first {train_sentences} training sentences)")
        paths = {}
        for split, count in (("train", train_sentences), ("dev", 500), ("test", 1000)):
            examples = read_conll(msra_dir / f"{split}.txt").examples[:count]
            paths[split] = write_conll(examples, data_dir / f"{split}.txt")
        return paths
    print(f"data: {msra_dir} has no MSRA corpus; generating a synthetic one")
    return write_synthetic_split(data_dir, seed=0, n_train=train_sentences, n_dev=300, n_test=300)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default="runs/workshop", help="where everything is written")
    parser.add_argument("--msra-dir", default=os.environ.get("MSRA_DIR", "../shared/data/msra"),
                        help="MSRA corpus directory (train.txt, dev.txt, test.txt)")
    parser.add_argument("--train-sentences", type=int, default=6000, help="training sentences to use")
    parser.add_argument("--steps", type=int, default=600, help="training steps")
    parser.add_argument("--model-config", default="tiny", help="model preset or JSON")
    args = parser.parse_args(argv)

    from albert_ner.predict import Predictor, evaluate
    from albert_ner.data.readers import read_conll
    from albert_ner.train.loop import TrainArgs, run_training
    from albert_ner.train.metrics import format_report

    started = time.time()
    run_dir = Path(args.run_dir).resolve()
    paths = stage_data(run_dir, Path(args.msra_dir), args.train_sentences)
    model_dir = run_dir / "model"
    run_training(TrainArgs(
        train_file=str(paths["train"]), dev_file=str(paths["dev"]), output_dir=str(model_dir),
        model_config=args.model_config, max_steps=args.steps, eval_every=max(args.steps // 4, 1),
        log_every=50, batch_size=32, max_seq_length=128,
    ))

    predictor = Predictor.from_model_dir(model_dir)
    scores = evaluate(predictor, read_conll(paths["test"]).examples)
    report = format_report(scores)
    (run_dir / "test_report.txt").write_text(report + "\n", encoding="utf-8")
    (run_dir / "test_scores.json").write_text(json.dumps(scores, ensure_ascii=False, indent=2), encoding="utf-8")
    print("\ntest set:\n" + report)

    with open(run_dir / "sample_predictions.jsonl", "w", encoding="utf-8") as fh:
        for example in predictor.predict(SAMPLES):
            entities = [e.to_json(example.text) for e in example.entities]
            fh.write(json.dumps({"text": example.text, "entities": entities}, ensure_ascii=False) + "\n")
            print(example.text, "→", ", ".join(f"{e['text']}/{e['type']}" for e in entities) or "(none)")
    print(f"\ndone in {time.time() - started:.0f}s. Everything is under {run_dir}:")
    print(f"  model directory   {model_dir}  (SavedModel in {model_dir / '1'})")
    print(f"  metrics per eval  {model_dir / 'metrics.jsonl'}")
    print(f"  test report       {run_dir / 'test_report.txt'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
