"""`vigil workload`'s settings: each field is a flag (`--max-num-seqs`) and an environment variable
(`VIGIL_WORKLOAD_MAX_NUM_SEQS`); flags win over the environment. The flags are generated from
this class by `vigil.flags`, so the field descriptions here are the `--help` text.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from workload.guards import body_limit_for
from workload.schemas import MAX_BLOCKS

MODEL_CONTEXT = 2048  # ModelConfig.max_model_len; kept here so parsing flags does not import torch (a test checks)


class WorkloadSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_WORKLOAD_", extra="ignore")

    port: int = Field(8000, ge=1, le=65535, description="Listen port.")
    host: str = Field("127.0.0.1", description="Listen address; a non-loopback one needs VIGIL_CONTROL_TOKEN.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where the model runs.")
    max_num_seqs: int = Field(32, ge=1, le=1024, description="Most sequences in one batch.")
    max_num_batched_tokens: int = Field(
        2048,
        ge=MODEL_CONTEXT,
        le=65536,
        description=f"Most tokens in one step; at least the model's context ({MODEL_CONTEXT}), as prompts are "
        "prefilled in one step.",
    )
    num_blocks: int = Field(512, ge=1, le=MAX_BLOCKS, description="KV-cache blocks of 16 tokens.")
    max_waiting: int = Field(256, ge=1, description="Queued requests before new ones are answered 429.")
    stall_after: float = Field(
        5.0, gt=0, description="Seconds without progress, with work waiting, before /health fails."
    )
    threads: int = Field(1, ge=1, description="Intra-op threads of the model (more was slower on 2 cores).")
    demo_rate: float = Field(0.0, ge=0, description="Requests/s of built-in demo traffic.")
    max_body_bytes: int = Field(
        body_limit_for(MODEL_CONTEXT),
        ge=1024,
        description="Largest request body; larger ones get 413 before they are read. The default fits a prompt "
        "that fills the model's context even if JSON escapes every byte.",
    )
