"""The reference inference workload (`vigil workload`): a small torch model served the way vLLM serves,
with continuous batching, a paged KV cache, the OpenAI completions API, vLLM's metrics, a control
API for drills (config, shed, restart, faults) and `vigil loadgen`."""
