"""The reference inference workload (torch, continuous batching, vLLM metrics): built by its issue."""
