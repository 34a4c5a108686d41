"""The per-node GPU agent (NVML, simulated backend, engine scraper, OTLP export): built by its issue."""
