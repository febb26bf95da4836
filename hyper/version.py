"""hyper's version, in a module of its own: anything may import it, and it imports nothing."""

__version__ = "0.1.0"
