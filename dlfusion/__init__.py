"""dlfusion: layer fusion and core assignment for multicore DNN accelerators."""

__version__ = "0.1.0"
