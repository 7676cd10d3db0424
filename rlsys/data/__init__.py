"""Prompt data: built-in generated tasks (``tasks``), JSONL/Parquet datasets (``datasets``) and the
resumable training prompt stream (``prompt_stream``). ``setup`` assembles them from the data config.

Nothing here imports ray, vllm or deepspeed; reasoning-gym is imported only when its tasks are used.
"""
