"""Open models in and out: Hugging Face directories, GGUF and llama2.c files.

    zerollm convert --from hf DIR --out DIR           zerollm.convert.convert(src, out, from_format="hf")
    zerollm convert --from llama2c model.bin --tokenizer tok.model --out DIR
    zerollm export --format hf|gguf|llama2c --model DIR --out PATH      zerollm.convert.export(...)

Modules: `hf` (HF dirs: load, convert, export), `hf_arch` (config and tensor-name rules per architecture),
`hf_tokenizer` (tokenizer.json, tokenizer_config.json, chat templates), `gguf` (GGUF export), `llama2c`
(llama2.c `.bin` and `tokenizer.bin`), `weights` (lazy safetensors reading, streaming writing).
Submodules import torch-heavy or optional packages (transformers, tokenizers, gguf) only when used.
"""
from zerollm.tokenizer.base import register_algorithm as _register

# tokenizers wrapped from the `tokenizers` library (non byte-level tokenizer.json) save as algorithm "hf"
_register("hf", "zerollm.interop.hf_tokenizer:HFTokenizer")
