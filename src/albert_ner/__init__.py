"""albert_ner: Chinese NER with ALBERT/BERT + CRF on TensorFlow 2.

The package is split by role, after Google BERT's modeling.py and keras-hub:
  data/   corpus readers, tag schemes, statistics
  text/   character tokenizer, vocabulary, long-text windows
  model/  encoder config, ALBERT/BERT encoder, CRF, tagger
  train/  training loop, optimizer, metrics
  export.py / predict.py   the model directory: SavedModel in, entities out
"""

__version__ = "0.1.0"
