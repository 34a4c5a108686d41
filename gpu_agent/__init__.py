"""The per-node GPU agent: NVML or simulated GPUs and engine /metrics, exported over OTLP/HTTP with a spool.

Modules: `agent` (the sampling loop and its threads); the backends `nvml` (with `nvml_fields`, what
each NVML query reads, and `xid`, XID events) and `simulated`; `scrape` (engine /metrics) with
`engines` (how each engine's metrics map onto the common names); `telemetry` (one collection per
cycle in the OTel SDK's data model); `export` and `spool` (delivery without loss or duplicates);
`attribution` (PIDs, containers, pods); `control` (the local HTTP endpoint); `settings` (every
flag and `VIGIL_AGENT_*` variable) and `cli` (`vigil agent`, and how `vigil up` runs it).
"""
