"""The CLI stages, one module each: `zerollm <stage>` (cli.py) and `zerollm.api.<stage>` call these.

    tokenizer.py   tokenizer train | stats | compare      text → tokenizer dir
    data.py        data prepare                           text + tokenizer → shards dir
    pretrain.py    pretrain, quickstart                   shards → run dir (checkpoints, metrics, report)
    posttrain.py   sft, reward, dpo, grpo, ppo            model + data → run dir (model/, adapter/)
    generate.py    generate                               model → text (engine/)
    chat.py        chat                                   the terminal REPL (chat/)
    rag.py         rag index | ask                        documents → index dir → cited answers (rag/)
    convert.py     convert, export                        HF / llama2.c ⇄ checkpoint; GGUF (interop/)
    quantize.py    quantize, memory                       checkpoint → int8/int4/NF4 checkpoint
    serve.py       serve                                  OpenAI-compatible API + chat page (serve/)
    model.py       model info                             parameters and FLOPs per token
    scaling.py     scaling sweep | fit, estimate          shards → sweep dir → fitted law; a run's plan (scaling/)

A stage composes library modules (loading.py, rundir.py, runtime.py, train/, engine/, ...); stages never
import each other.
"""
