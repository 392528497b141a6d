"""The tagger: encoder [+ bigrams] [+ lexicon] [→ BiLSTM] → dropout → per-tag scores → CRF (or softmax).

The encoder is ALBERT/BERT (`model.encoder`) or, for the classic recipe, a plain character
embedding table (`model.sequence.CharEmbeddingEncoder`). Two optional pieces add a locality
bias (see `model.sequence`): hashed character-bigram embeddings concatenated to the encoder
output, and a BiLSTM between encoder and classifier. A third adds outside knowledge: which
dictionary words cover each character (`model.lexicon`). So one class covers ALBERT-CRF (the
article's model), ALBERT-BiLSTM-CRF and the no-transformer BiLSTM-CRF, with or without a lexicon.
`members` > 1 makes it an ensemble of that many encoder stacks and classifiers, trained side by
side on the same batches, whose emission scores are averaged before the one CRF.

Two input forms, one per job:
  * training windows — `input_ids` [batch, seq] already framed as `[CLS] chars [SEP] [PAD]…`,
    at most `max_seq_length` long (see `text.windows.split_example`);
  * whole sentences of any length — `char_ids` [batch, chars] without special tokens.
    `predict_tags` cuts them into overlapping windows inside the graph, blends the windows'
    emission scores (triangular weights: a window's centre is trusted more than its edges) and
    decodes the whole sentence at once. The exported SavedModel, `albert-ner predict` and
    `albert-ner evaluate` all run this one function, so they cannot disagree.

Example:
  tagger = Tagger(EncoderConfig.resolve("micro", vocab_size=100), num_tags=7)
  losses = tagger.sentence_losses(input_ids, tag_ids)          # [batch]
  tags = tagger.predict_tags(char_ids, lengths, window=126, stride=63)  # [batch, chars]
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from albert_ner.model.config import EncoderConfig
from albert_ner.model.crf import CRF
from albert_ner.model.encoder import PAD_ID
from albert_ner.model.lexicon import LexiconFeatures
from albert_ner.model.sequence import KnownBigrams, stack_features, stack_layers

HEADS = ("crf", "softmax")


def window_weights(window: int) -> tf.Tensor:
    """Triangular blending weights [window]: min(i + 1, window - i)."""
    i = tf.range(window, dtype=tf.float32)
    return tf.minimum(i + 1.0, tf.cast(window, tf.float32) - i)


def _classifier(config: EncoderConfig, num_tags: int) -> keras.layers.Dense:
    # float32 scores even under a mixed-precision policy: the CRF sums them over time.
    return keras.layers.Dense(
        num_tags,
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=config.initializer_range),
        dtype="float32",
        name="classifier",
    )


def member_scores(encoder, bigrams, lstm, dropout, classifier, model_ids, words, training, following=None):
    """One member's emission scores [batch, seq - 2, tags] for framed (possibly hidden) ids.

    `words` are the lexicon features of the unhidden ids, or None; `following` what the
    bigrams pair each position with (`KnownBigrams`), or None for the next id.
    """
    hidden = stack_features(encoder, bigrams, lstm, model_ids, training, dropout, extra=words,
                            following=following)
    hidden = dropout(hidden, training=training)
    if words is not None and lstm is not None:
        # The dictionary's view reaches the classifier directly too: a word match then
        # moves the tag scores through one linear map, which a model trained on few
        # sentences learns much sooner than a path through the BiLSTM.
        hidden = tf.concat([hidden, tf.cast(words, hidden.dtype)], axis=-1)
    return classifier(hidden)[:, 1:-1, :]


class EnsembleMember(keras.layers.Layer):
    """The second, third, … encoder stack and classifier of an ensemble (`Tagger` members).

    Member 1 lives in the tagger's own attributes (so a one-member tagger is exactly the
    model without ensembles and older model directories load unchanged); the others each
    hold the same layers under their own name ("tagger/member2/encoder/…").

    Call args: model_ids (framed, possibly hidden), words (lexicon features or None),
    following (for the bigrams, or None), training.
    """

    def __init__(self, config: EncoderConfig, num_tags: int, lstm_units: int, bigram_buckets: int,
                 bigram_size: int, classifier_dropout: float, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.bigrams, self.lstm = stack_layers(config, lstm_units, bigram_buckets, bigram_size)
        self.dropout = keras.layers.Dropout(classifier_dropout)
        self.classifier = _classifier(config, num_tags)

    def call(self, model_ids, words=None, following=None, training=False):
        return member_scores(self.encoder, self.bigrams, self.lstm, self.dropout, self.classifier,
                             model_ids, words, training, following)


class Tagger(keras.Model):
    """Encoder (+ bigrams, + BiLSTM) + token classifier + CRF/softmax head for one tag set.

    Args:
      config: the encoder's config (model_type albert, bert or chars).
      num_tags: size of the tag set.
      head: "crf" or "softmax".
      classifier_dropout: dropout on the features before the classifier (and the BiLSTM).
      cls_id, sep_id: ids that frame every window.
      lstm_units: units per direction of a BiLSTM over the encoder output; 0 = none.
      bigram_buckets, bigram_size: hashed character-bigram embeddings (buckets × size)
        concatenated to the encoder output; 0 = none.
      lexicon_size, lexicon_max_len, lexicon_classes: dictionary-word features (entries,
        longest word, class names); size 0 = none. The entries are weights, loaded with
        `self.lexicon.set_entries` or with the other weights.
      lexicon_profile: also give every character its profile in the lexicon's words (a
        table of config.vocab_size rows; `model.lexicon`), which carries over to names
        the dictionary does not list.
      trained_vocab_size, unk_id: ids ≥ trained_vocab_size are characters the training text
        never shows, added to the vocabulary only so that the lexicon can match words with
        them; the encoder and bigrams see them as [UNK] (unk_id), whose embedding is trained,
        instead of untrained rows of their own. 0 = every id is used as it is.
      unk_dropout: in training, the share of characters the encoder and bigrams see as [UNK]
        (the lexicon still sees them). A model trained on few sentences otherwise learns
        its names by heart from their characters; with some characters hidden it must also
        learn from context and the dictionary, which is all it has for unseen names.
      known_bigrams: size of the table of character bigrams seen in training
        (`model.sequence.KnownBigrams`, filled with `self.known_bigrams.set_keys`); outside
        training, a pair of characters not in it is read as (character, [UNK]). 0 = none
        (needs bigram_buckets).
      members: encoder stacks (encoder, bigrams, BiLSTM, classifier) whose emission scores
        are averaged, each with its own initial weights, its own dropout masks and its own
        share of hidden characters (0.5 to 1.5 times unk_dropout);
        trained together, one loss per member (`sentence_losses`), sharing the CRF and the
        lexicon. Averaging a few models trained on a small set cancels much of what each
        learned by chance (BENCHMARKS.md, "Small data"); each member costs its own time.
    """

    def __init__(
        self,
        config: EncoderConfig,
        num_tags: int,
        head: str = "crf",
        classifier_dropout: float = 0.1,
        cls_id: int = 101,
        sep_id: int = 102,
        lstm_units: int = 0,
        bigram_buckets: int = 0,
        bigram_size: int = 0,
        lexicon_size: int = 0,
        lexicon_max_len: int = 0,
        lexicon_classes=(),
        lexicon_profile: bool = False,
        trained_vocab_size: int = 0,
        unk_id: int = 100,
        unk_dropout: float = 0.0,
        members: int = 1,
        known_bigrams: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if members < 1:
            raise ValueError(f"members must be at least 1, got {members}")
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        self.config = config
        self.num_tags = num_tags
        self.head = head
        self.cls_id, self.sep_id = cls_id, sep_id
        self.trained_vocab_size, self.unk_id = int(trained_vocab_size), int(unk_id)
        if not 0.0 <= unk_dropout < 1.0:
            raise ValueError(f"unk_dropout must be in [0, 1), got {unk_dropout}")
        self.unk_dropout = float(unk_dropout)
        # An ensemble's members hide different shares around unk_dropout (half to 1.5 times
        # it, at most 0.9), so that they lean on characters, context and dictionary in
        # different measure.
        self.member_unk_dropout = [
            min(0.9, self.unk_dropout * (0.5 + k / (members - 1))) if members > 1 else self.unk_dropout
            for k in range(members)
        ]
        # Only with the option: its RNG state is a variable, and older model dirs lack it.
        self.unk_seed = keras.random.SeedGenerator(name="unk_seed") if unk_dropout else None
        self.encoder, self.bigrams, self.lstm = stack_layers(config, lstm_units, bigram_buckets, bigram_size)
        self.lexicon = (
            LexiconFeatures(
                lexicon_size, lexicon_max_len, len(lexicon_classes),
                profile_vocab=config.vocab_size if lexicon_profile else 0, name="lexicon",
            )
            if lexicon_size else None
        )
        self.dropout = keras.layers.Dropout(classifier_dropout)
        self.classifier = _classifier(config, num_tags)
        self.crf = CRF(num_tags, name="crf") if head == "crf" else None
        # Created last, so a one-member tagger's variables keep their order (weights.npz).
        self.other_members = [
            EnsembleMember(config, num_tags, lstm_units, bigram_buckets, bigram_size, classifier_dropout,
                           name=f"member{k}")
            for k in range(2, members + 1)
        ]
        if known_bigrams and not bigram_buckets:
            raise ValueError("known_bigrams needs bigram embeddings (bigram_buckets > 0)")
        # After the members too: older model directories keep their variable order.
        self.known_bigrams = (
            KnownBigrams(known_bigrams, (cls_id, sep_id), unk_id, name="known_bigrams") if known_bigrams else None
        )

    @property
    def members(self) -> int:
        return 1 + len(self.other_members)

    def stacks(self) -> list[tuple]:
        """(encoder, bigrams, BiLSTM) of every member; bigrams and BiLSTM may be None."""
        return [(self.encoder, self.bigrams, self.lstm)] + [
            (m.encoder, m.bigrams, m.lstm) for m in self.other_members
        ]

    def set_allowed_transitions(self, allowed, allowed_start, allowed_end) -> None:
        """Restricts CRF decoding to the tag scheme's grammar (no O → I-X, ...)."""
        if self.crf is not None:
            self.crf.set_allowed_transitions(
                np.asarray(allowed), np.asarray(allowed_start), np.asarray(allowed_end)
            )

    def build_variables(self) -> None:
        """Creates every variable by running one tiny batch (Keras builds lazily)."""
        ids = tf.ones([1, 3], tf.int32)  # any non-padding id that every vocabulary has
        self.sentence_losses(ids, tf.zeros([1, 1], tf.int32), training=False)

    def call(self, input_ids, training=False, each_member=False):
        """Emission scores for the characters of framed input ids (the members' mean).

        Args:
          input_ids: int32 [batch, seq] as `[CLS] chars [SEP] [PAD]…`.
          each_member: return every member's scores, stacked, instead of their mean.
        Returns:
          float32 [batch, seq - 2, num_tags]: position j scores character j (the [CLS] and
          the final slot are cut, so the scores line up with the characters); with
          each_member, [members, batch, seq - 2, num_tags].
        """
        model_ids = input_ids
        unknown = tf.fill(tf.shape(input_ids), tf.cast(self.unk_id, input_ids.dtype))
        if self.trained_vocab_size:
            model_ids = tf.where(input_ids < self.trained_vocab_size, input_ids, unknown)
        words = self.lexicon(input_ids) if self.lexicon is not None else None
        # Every bigram of the training windows is in the table by construction, so the lookup
        # only changes anything (and only runs) outside training.
        following = self.known_bigrams(model_ids) if self.known_bigrams is not None and not training else None
        hiding = training and self.unk_dropout
        if hiding:
            is_char = (input_ids != PAD_ID) & (input_ids != self.cls_id) & (input_ids != self.sep_id)
        emissions = []
        for member in range(self.members):
            member_ids = model_ids
            if hiding:
                # Each member hides its own characters, and its own share of them.
                rate = self.member_unk_dropout[member]
                hide = keras.random.uniform(tf.shape(input_ids), seed=self.unk_seed) < rate
                member_ids = tf.where(is_char & hide, unknown, model_ids)
            if member == 0:
                emissions.append(member_scores(self.encoder, self.bigrams, self.lstm, self.dropout,
                                               self.classifier, member_ids, words, training, following))
            else:
                emissions.append(self.other_members[member - 1](member_ids, words, following, training=training))
        if each_member:
            return tf.stack(emissions)
        if len(emissions) == 1:
            return emissions[0]
        return tf.add_n(emissions) / float(len(emissions))

    @staticmethod
    def char_lengths(input_ids):
        """Number of characters in each framed row: real tokens minus [CLS] and [SEP]."""
        return tf.reduce_sum(tf.cast(tf.not_equal(input_ids, PAD_ID), tf.int32), axis=1) - 2

    def sentence_losses(self, input_ids, tag_ids, training=True):
        """Per-sentence loss [batch]: CRF negative log-likelihood, or summed token cross-entropy.

        With several members, the mean of the members' losses: each member is trained as if
        alone (the loss of the averaged scores would let members lean on each other).

        Args:
          input_ids: int32 [batch, seq], framed.
          tag_ids: int32 [batch, seq - 2]; positions past each sentence are ignored.
        """
        lengths = self.char_lengths(input_ids)
        # Through Keras' __call__ (not `call` directly), which builds the model and names its
        # variables ("tagger/…") as every run before ensembles did.
        stacked = self(input_ids, training=training, each_member=True)  # [members, batch, seq-2, tags]
        if self.crf is None:
            token_mask = tf.sequence_mask(lengths, tf.shape(tag_ids)[1], dtype=tf.float32)
        losses = []
        for member in range(self.members):
            emissions = stacked[member]
            if self.crf is not None:
                losses.append(-self.crf.log_likelihood(emissions, tag_ids, lengths))
            else:
                token_losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tag_ids, logits=emissions)
                losses.append(tf.reduce_sum(token_losses * token_mask, axis=1))
        return losses[0] if len(losses) == 1 else tf.add_n(losses) / float(len(losses))

    def decode(self, emissions, lengths):
        """Best tag ids [batch, chars] (0 past each length)."""
        if self.crf is not None:
            tags, _ = self.crf.viterbi_decode(emissions, lengths)
            return tf.cast(tags, tf.int32)
        tags = tf.argmax(emissions, axis=-1, output_type=tf.int32)
        return tags * tf.sequence_mask(lengths, tf.shape(tags)[1], dtype=tf.int32)

    def sentence_emissions(self, char_ids, lengths, window: int, stride: int):
        """Emission scores for whole sentences of any length, blended over windows.

        Args:
          char_ids: int32 [batch, chars], character ids without special tokens, 0-padded.
          lengths: int32 [batch], characters per sentence.
          window: characters per window (max_seq_length - 2).
          stride: characters between window starts (≤ window).
        Returns:
          float32 [batch, chars, tags].
        """
        batch, n = tf.shape(char_ids)[0], tf.shape(char_ids)[1]
        longest = tf.reduce_max(lengths)
        # A batch of short sentences runs windows only as wide as its longest sentence: the
        # encoder's cost grows with the window, and padding to max_seq_length would spend it
        # on nothing (2.4x the time for 50-character sentences in a 126-character window).
        window = tf.minimum(window, tf.maximum(longest, 1))
        span = tf.maximum(longest - window, 0)
        num_windows = 1 + (span + stride - 1) // stride
        # Per sentence, starts 0, stride, 2·stride, … and a last window ending at the sentence
        # end (text.windows.window_starts). Sentences shorter than the batch's longest repeat
        # their last start; those repeats get weight 0 below.
        k = tf.range(num_windows)[tf.newaxis, :]  # [1, windows]
        starts = tf.minimum(k * stride, tf.maximum(lengths[:, tf.newaxis] - window, 0))
        first_use = tf.concat(
            [tf.ones_like(starts[:, :1], tf.bool), starts[:, 1:] > starts[:, :-1]], axis=1
        )  # [batch, windows]
        offsets = starts[:, :, tf.newaxis] + tf.range(window)[tf.newaxis, tf.newaxis, :]
        padded = tf.pad(char_ids, [[0, 0], [0, window]])  # windows may reach past `chars`
        pieces = tf.gather(padded, offsets, batch_dims=1)  # [batch, windows, window]
        in_sentence = (offsets < lengths[:, tf.newaxis, tf.newaxis]) & first_use[:, :, tf.newaxis]
        pieces = tf.where(in_sentence, pieces, tf.zeros_like(pieces))
        piece_len = tf.reduce_sum(tf.cast(in_sentence, tf.int32), axis=-1)  # [batch, windows]

        # Only windows in first use go through the model: in a batch with one long sentence
        # every row would otherwise run as many windows as that sentence needs (the repeats
        # carry weight 0 below), e.g. 32 windows instead of 17 for 16 rows.
        used = tf.reshape(first_use, [-1])  # [batch * windows]
        flat = tf.boolean_mask(tf.reshape(pieces, [-1, window]), used)
        flat_len = tf.boolean_mask(tf.reshape(piece_len, [-1]), used)
        rows = tf.shape(flat)[0]
        framed = tf.concat(
            [tf.fill([rows, 1], self.cls_id), flat, tf.zeros([rows, 1], tf.int32)], axis=1
        )
        framed += tf.one_hot(flat_len + 1, window + 2, dtype=tf.int32) * self.sep_id
        scores = self(framed, training=False)  # [rows, window, tags]
        scores = tf.scatter_nd(
            tf.where(used), scores, tf.cast(tf.stack([batch * num_windows, window, self.num_tags]), tf.int64)
        )
        scores = tf.reshape(scores, [batch, num_windows, window, self.num_tags])

        weights = window_weights(window)[tf.newaxis, tf.newaxis, :] * tf.cast(in_sentence, tf.float32)
        # Scatter-add every window position back onto its sentence position.
        target = tf.minimum(offsets, n + window - 1)
        summed = tf.zeros([batch, n + window, self.num_tags])
        idx = tf.stack(
            [tf.broadcast_to(tf.range(batch)[:, None, None], tf.shape(target)), target], axis=-1
        )
        summed = tf.tensor_scatter_nd_add(summed, idx, scores * weights[..., tf.newaxis])
        norm = tf.tensor_scatter_nd_add(tf.zeros([batch, n + window]), idx, weights)
        return (summed / tf.maximum(norm, 1e-9)[..., tf.newaxis])[:, :n]

    def predict_tags(self, char_ids, lengths, window: int, stride: int):
        """Tag ids [batch, chars] for whole sentences (see `sentence_emissions`)."""
        emissions = self.sentence_emissions(char_ids, lengths, window, stride)
        return self.decode(emissions, lengths)

    def predict_tags_and_scores(self, char_ids, lengths, window: int, stride: int, continues, is_entity):
        """Tag ids and entity confidences for whole sentences, from one emissions pass.

        Args:
          char_ids, lengths, window, stride: as for `predict_tags`.
          continues: bool [tags, tags], is_entity: bool [tags]: the tag scheme's grammar
            (`model.crf.continuation_matrix(tagset.tags, tagset.scheme)`).
        Returns:
          (tag ids int32 [batch, chars], entity_scores float32 [batch, chars]): at the first
          character of each decoded entity its probability, 0 elsewhere. CRF head: the
          CRF's probability of that exact span and type (`CRF.entity_scores`). Softmax head:
          the same event under the per-character softmax distributions (the CRF formula
          with zero transitions), i.e. the product of the span's tag probabilities times
          the probability that its neighbours do not continue it.
        """
        from albert_ner.model.crf import probabilities_at, span_log_probs

        emissions = self.sentence_emissions(char_ids, lengths, window, stride)  # [batch, chars, tags]
        tags = self.decode(emissions, lengths)
        if self.crf is not None:
            return tags, self.crf.entity_scores(emissions, tags, lengths, continues, is_entity)
        k = self.num_tags
        zeros = (tf.zeros([k, k]), tf.zeros([k]), tf.zeros([k]))
        log_probs, begins = span_log_probs(emissions, tags, lengths, *zeros, continues, is_entity)
        return tags, probabilities_at(log_probs, begins)
