"""folkrnn: the folk-rnn v2 music transcription model, rebuilt and explained."""

__version__ = "0.1.0"
