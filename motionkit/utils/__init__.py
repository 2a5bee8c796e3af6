"""Small helpers shared across motionkit (file safety and the like)."""

from motionkit.utils.atomic import atomic_path, atomic_write

__all__ = ["atomic_path", "atomic_write"]
