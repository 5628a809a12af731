"""The project's exception for user mistakes (bad files, options, tokens).

The CLI turns a `FolkRNNError` into one line on stderr and exit code 2; anything
else escaping is a bug in folkrnn.
"""


class FolkRNNError(Exception):
    """A problem with the user's input, described in one line."""
