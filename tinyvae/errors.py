"""The errors tinyvae raises on bad input, one class per kind of problem.

Every message is one line that names the problem and the fix. Command-line
tools catch `TinyVAEError` and print the message alone, never a traceback.
"""


class TinyVAEError(Exception):
    """Base class: a problem the user can fix, explained in one line."""


class InputError(TinyVAEError, ValueError):
    """An array with the wrong shape, dtype or values (NaN, pixels outside [0, 1])."""


class BackendError(TinyVAEError, RuntimeError):
    """An array backend that is unknown, not installed, or has no usable device."""


class DataError(TinyVAEError, RuntimeError):
    """A data file that is missing, truncated or fails its checksum."""


class CheckpointError(TinyVAEError, RuntimeError):
    """A checkpoint that is unreadable or was written for another configuration."""
