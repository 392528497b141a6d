"""Pretrained Chinese ALBERT/BERT checkpoints: find, download, recognise and load them.

  resolve_pretrained(spec, layout=None)  -> Pretrained (config, vocab_file, layout, reader)
  Pretrained.load_into(encoder)          -> LoadReport (also printed)
  fetch_model(name)                      -> directory of a downloaded, unpacked model
  LAYOUTS, KNOWN_MODELS, CheckpointError

Modules: `layouts` (detection and name mapping), `readers` (TF1 / safetensors / torch files),
`pretrained` (resolution and loading), `download` (cache, resume, sha256, unpack), `native`
(the encoder directory `albert-ner pretrain` writes, layout "albert-ner").
"""

from albert_ner.checkpoints.download import KNOWN_MODELS, KnownModel, cache_root, fetch_model
from albert_ner.checkpoints.layouts import LAYOUTS, detect_layout
from albert_ner.checkpoints.pretrained import LoadReport, Pretrained, resolve_pretrained
from albert_ner.checkpoints.readers import CheckpointError

__all__ = [
    "CheckpointError",
    "KNOWN_MODELS",
    "KnownModel",
    "LAYOUTS",
    "LoadReport",
    "Pretrained",
    "cache_root",
    "detect_layout",
    "fetch_model",
    "resolve_pretrained",
]
