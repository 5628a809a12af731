"""ABC text <-> folk-rnn v2 tokens: parse, normalise, transpose, write.

`read_abc`/`read_abc_file` turn ABC (several tunes per file, as people write it)
into v2 token sequences, one `TuneResult` per tune, rejecting with a reason what v2
cannot express; `tokens_to_abc` writes v2 tokens back as standard ABC in any key.
See docs/codec.md for the conventions.
"""

from folkrnn.abc.keys import Key, Tonic, parse_key, parse_key_field
from folkrnn.abc.reader import AbcRejected, TuneResult, read_abc, read_abc_file, tune_to_tokens
from folkrnn.abc.writer import tokens_to_abc

__all__ = [
    "AbcRejected",
    "Key",
    "Tonic",
    "TuneResult",
    "parse_key",
    "parse_key_field",
    "read_abc",
    "read_abc_file",
    "tokens_to_abc",
    "tune_to_tokens",
]
