"""The OTLP/HTTP metrics receiver: decode → validate → convert → batch → durable insert."""
