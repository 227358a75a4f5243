"""zerollm: build, train, align and use your own language models, from zero.

The Python API uses the same names as the CLI stages; see `zerollm.api`. The transformers-shaped entry
points of the books' listings, `zerollm.from_pretrained` and `zerollm.pipeline`, live in zerollm/pretrained.py
(imported on first use, so `import zerollm` stays light).
"""
__version__ = "0.1.0"


def __getattr__(name):
    if name in ("from_pretrained", "pipeline"):
        from zerollm import pretrained

        return getattr(pretrained, name)
    raise AttributeError(f"module 'zerollm' has no attribute {name!r}")
