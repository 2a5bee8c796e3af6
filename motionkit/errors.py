"""User-facing errors: each carries one line that names the problem and the fix."""


class MotionkitError(ValueError):
    """Bad input from the user (file, layout, argument). The CLI prints it as one line, no traceback."""


class LayoutMismatchError(MotionkitError, ValueError):
    """An adapter's block layout does not fit the UNet (or the checkpoint) it is used with."""


class FormatError(MotionkitError, ValueError):
    """A file is unreadable, corrupt, unsafe, or of a layout motionkit does not recognise."""
