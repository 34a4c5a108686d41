"""The per-node GPU agent: NVML or simulated GPUs and engine /metrics, exported over OTLP/HTTP with a spool.

Modules: `agent` (the sampling loop and its threads), `nvml` and `simulated` (the backends),
`scrape` (engine /metrics), `telemetry` (one collection per cycle in the OTel SDK's data model),
`export` and `spool` (delivery without loss or duplicates), `attribution` (PIDs, containers, pods),
`control` (the local HTTP endpoint), `cli` (`vigil agent`, and how `vigil up` runs it).
"""
