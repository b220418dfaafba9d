"""Errors that name the file, the key and the fix.

Every error a user can cause by editing config, constitution or resources is one of these, so that the
workflow stops with a message instead of a stack trace deep inside a library.
"""


class MaximalcaiError(Exception):
    """Base class: a problem the user can fix, with a message that says how."""


class ConfigError(MaximalcaiError):
    """config.yaml (or a --configfile) is invalid."""


class ConstitutionError(MaximalcaiError):
    """constitution.yaml is invalid."""


class ResourceError(MaximalcaiError):
    """A file under resources/ (few-shot pool, demonstrations, eval set) is missing or malformed."""


class TableError(MaximalcaiError):
    """A Parquet table is missing, empty where rows are required, corrupt or off-schema."""


class ChatTemplateLeakError(MaximalcaiError):
    """A chat-template control token reached a base-model prompt."""


class PromptTooLongError(MaximalcaiError):
    """A prompt that, with the answer it may get, does not fit the model's context."""


class HardwareError(MaximalcaiError):
    """A GPU-only option was asked for on a machine without CUDA, or a GPU package is missing."""


class ModelSourceError(MaximalcaiError):
    """The configured base model cannot be found or loaded."""


class DiskFullError(MaximalcaiError):
    """The disk a job writes to filled up: the message names the path, the space left and the rerun."""
