"""zerollm: build, train, align and use your own language models, from zero.

The Python API uses the same names as the CLI stages; see `zerollm.api`.
"""
__version__ = "0.1.0"
