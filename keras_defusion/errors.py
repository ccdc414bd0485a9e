"""The errors keras-defusion raises, all under `KerasDefusionError`.

Each also derives from the built-in error it was before (ValueError,
RuntimeError, FileNotFoundError), so callers catching those keep working.
Every message names the file or value at fault and says what to do.
The CLI prints any of them as `error: ...` and exits with `EXIT_ERROR`.
"""

EXIT_ERROR = 2


class KerasDefusionError(Exception):
    """Base of every error keras-defusion raises on purpose."""


class ImageReadError(KerasDefusionError, ValueError):
    """A photo, mask or map file that cannot be used; the message names it."""


class DataError(KerasDefusionError, ValueError):
    """Unusable training or evaluation data; the message names every bad file."""


class BackboneWeightsError(KerasDefusionError, RuntimeError):
    """The encoder's requested weights could not be loaded."""


class PretrainedModelMissing(KerasDefusionError, FileNotFoundError):
    """A registered model's files are not in the installed package."""


class ModelLoadError(KerasDefusionError, ValueError):
    """A model source that cannot be loaded; the message names it."""


class ExportError(KerasDefusionError, RuntimeError):
    """An export that cannot be made or failed a check after writing."""


class EvaluationError(KerasDefusionError, ValueError):
    """Missing, ambiguous or unreadable input; the message names the files."""


class RuntimeUnavailable(KerasDefusionError, RuntimeError):
    """An optional runtime or package is not installed here: a phone runtime,
    the Vulkan driver it needs, or a baseline's package."""


class UsageError(KerasDefusionError, ValueError):
    """A command-line option with an unusable value; the message names it."""


class DataWarning(UserWarning):
    """Data that can be used but is probably not what was meant: an empty or
    non-binary mask, a map of another shape or a colour map. The message
    names the file; the CLIs print it as a `warning:` line."""
