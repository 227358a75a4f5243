"""The decoder-only transformer (`Transformer`), its building blocks and the KV cache."""
from .kv_cache import KVCache
from .transformer import Transformer

__all__ = ["Transformer", "KVCache"]
