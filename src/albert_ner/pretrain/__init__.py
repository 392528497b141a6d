"""Masked-language-model pretraining of the encoder on unlabelled text (`albert-ner pretrain`).

  data.py      text files (and the text side of labelled corpora) → pieces that fit a window
  masking.py   15 % masking, 80/10/10, dynamic per epoch, optional whole-word (jieba)
  loop.py      PretrainArgs, the training loop, the encoder directory it writes
  cli.py       the `albert-ner pretrain` options
"""
