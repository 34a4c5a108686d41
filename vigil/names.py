"""The metric catalogue: every name the GPU agent emits, and engine metrics mapped onto common names.

Dashboards, alert rules and SLOs use these names, never an engine's own, so they work for any
engine. OTel style: dotted lower-case names, UCUM units (`%`, `By`, `W`, `J`, `MHz`, `Cel`, `s`,
`1` for ratios and flags, `{thing}` for counts).

GPU series carry `gpu.index`, `gpu.uuid`, `gpu.pci_bus_id` and `gpu.model` (MIG instances add
`gpu.mig.*`); the host (`host.name`), driver version, `--label` pairs and `vigil.simulated` are
resource attributes. Engine series carry `llm.engine` and `llm.endpoint`, plus `llm.model` where
the engine names its model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Kind(StrEnum):
    GAUGE = "gauge"
    COUNTER = "counter"  # monotonic, cumulative
    HISTOGRAM = "histogram"


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    kind: Kind
    description: str


# Attribute keys shared by the agent, the store's queries and the dashboards.
GPU_INDEX = "gpu.index"
GPU_UUID = "gpu.uuid"
GPU_PCI_BUS_ID = "gpu.pci_bus_id"
GPU_MODEL = "gpu.model"
GPU_MIG_GPU_INSTANCE = "gpu.mig.gpu_instance_id"
GPU_MIG_COMPUTE_INSTANCE = "gpu.mig.compute_instance_id"
GPU_MIG_PROFILE = "gpu.mig.profile"
GPU_DRIVER_VERSION = "gpu.driver.version"
GPU_CUDA_VERSION = "gpu.cuda.version"
HOST_NAME = "host.name"
SIMULATED = "vigil.simulated"
AGENT_BACKEND = "vigil.agent.backend"
K8S_NAMESPACE = "k8s.namespace.name"
K8S_POD = "k8s.pod.name"
K8S_POD_UID = "k8s.pod.uid"
K8S_CONTAINER = "k8s.container.name"
CONTAINER_ID = "container.id"
PROCESS_PID = "process.pid"
PROCESS_NAME = "process.executable.name"
XID = "xid"
ECC_COUNTER = "ecc.counter"  # volatile (since the last driver load) or aggregate (lifetime)
REASON = "reason"
LLM_ENGINE = "llm.engine"
LLM_ENDPOINT = "llm.endpoint"
LLM_MODEL = "llm.model"
OUTCOME = "outcome"
ERROR_TYPE = "error.type"

G, C, H = Kind.GAUGE, Kind.COUNTER, Kind.HISTOGRAM

GPU_UP = Metric("gpu.up", "1", G, "1 when the GPU answered this cycle, 0 when it is lost (fell off the bus).")
GPU_UTILIZATION = Metric("gpu.utilization", "%", G, "Time a kernel was running on the GPU over the last sample period.")
GPU_MEMORY_UTILIZATION = Metric(
    "gpu.memory.utilization", "%", G, "Time device memory was being read or written (DCGM DEV_MEM_COPY_UTIL)."
)
GPU_ENCODER_UTILIZATION = Metric("gpu.encoder.utilization", "%", G, "Video encoder utilization.")
GPU_DECODER_UTILIZATION = Metric("gpu.decoder.utilization", "%", G, "Video decoder utilization.")
GPU_MEMORY_USED = Metric("gpu.memory.used", "By", G, "Device memory in use.")
GPU_MEMORY_FREE = Metric("gpu.memory.free", "By", G, "Device memory free.")
GPU_MEMORY_RESERVED = Metric("gpu.memory.reserved", "By", G, "Device memory reserved by the driver and firmware.")
GPU_MEMORY_TOTAL = Metric("gpu.memory.total", "By", G, "Device memory installed.")
GPU_CLOCK_SM = Metric("gpu.clock.sm", "MHz", G, "SM clock.")
GPU_CLOCK_MEMORY = Metric("gpu.clock.memory", "MHz", G, "Memory clock.")
GPU_TEMPERATURE = Metric("gpu.temperature", "Cel", G, "GPU die temperature.")
GPU_MEMORY_TEMPERATURE = Metric("gpu.memory.temperature", "Cel", G, "HBM temperature (NVML field 82).")
GPU_POWER_DRAW = Metric("gpu.power.draw", "W", G, "Power draw averaged by the driver over about one second.")
GPU_POWER_INSTANT = Metric("gpu.power.instant", "W", G, "Instantaneous power draw (NVML field 186).")
GPU_POWER_LIMIT = Metric("gpu.power.limit", "W", G, "Enforced power limit.")
GPU_ENERGY = Metric("gpu.energy", "J", C, "Energy consumed since the driver was loaded.")
GPU_PCIE_REPLAY = Metric("gpu.pcie.replay", "{replay}", C, "PCIe replays (link retransmissions).")
GPU_PCIE_TX = Metric("gpu.pcie.tx", "By/s", G, "PCIe transmit throughput.")
GPU_PCIE_RX = Metric("gpu.pcie.rx", "By/s", G, "PCIe receive throughput.")
GPU_NVLINK_TX = Metric("gpu.nvlink.tx", "By", C, "NVLink data transmitted, all links.")
GPU_NVLINK_RX = Metric("gpu.nvlink.rx", "By", C, "NVLink data received, all links.")
GPU_ECC_CORRECTED = Metric("gpu.ecc.corrected", "{error}", C, "Corrected (single-bit) ECC errors, by `ecc.counter`.")
GPU_ECC_UNCORRECTED = Metric(
    "gpu.ecc.uncorrected", "{error}", C, "Uncorrected (double-bit) ECC errors, by `ecc.counter`."
)
GPU_REMAPPED_CORRECTABLE = Metric(
    "gpu.remapped_rows.correctable", "{row}", C, "Rows remapped after correctable errors."
)
GPU_REMAPPED_UNCORRECTABLE = Metric(
    "gpu.remapped_rows.uncorrectable", "{row}", C, "Rows remapped after uncorrectable errors."
)
GPU_REMAPPED_PENDING = Metric("gpu.remapped_rows.pending", "1", G, "1 when a remap waits for a GPU reset.")
GPU_REMAPPED_FAILURE = Metric("gpu.remapped_rows.failure", "1", G, "1 when a row remap has failed.")
GPU_CLOCK_EVENT_REASONS = Metric(
    "gpu.clock_event_reasons", "1", G, "Bitmask of the reasons clocks are held down (NVML clocks event reasons)."
)
GPU_CLOCK_EVENT_REASON_ACTIVE = Metric(
    "gpu.clock_event_reasons.active", "1", G, "1 while the clock event reason in `reason` is active."
)
GPU_XID_ERRORS = Metric("gpu.xid.errors", "{error}", C, "XID errors since the agent started, by `xid` code.")
GPU_RECOVERY_ACTION = Metric(
    "gpu.recovery_action", "1", G, "Driver's recommended action: 0 none, 1 GPU reset, 2 node reboot, 3/4 drain."
)
GPU_SM_ACTIVE = Metric("gpu.sm.active", "1", G, "Ratio of SMs busy (GPM, Hopper and newer).")
GPU_SM_OCCUPANCY = Metric("gpu.sm.occupancy", "1", G, "Ratio of resident warps to the maximum (GPM).")
GPU_TENSOR_ACTIVE = Metric("gpu.tensor.active", "1", G, "Ratio of time tensor cores were active (GPM).")
GPU_DRAM_ACTIVE = Metric("gpu.dram.active", "1", G, "Ratio of DRAM bandwidth used (GPM).")
GPU_PROCESSES = Metric("gpu.processes", "{process}", G, "Compute processes on the GPU.")
GPU_PROCESS_MEMORY = Metric(
    "gpu.process.memory.used", "By", G, "Device memory used by one process, with its container and pod."
)

VIOLATION_POLICIES = (
    "power",
    "thermal",
    "sync_boost",
    "board_limit",
    "low_utilization",
    "reliability",
    "app_clocks",
    "base_clocks",
)
GPU_VIOLATIONS = {
    policy: Metric(
        f"gpu.violation.{policy}", "s", C, f"Time clocks were held below the requested level by the {policy} policy."
    )
    for policy in VIOLATION_POLICIES
}

# NVML clocks event (formerly throttle) reasons; 0x200 and 0x400 exist only on the throttle API.
CLOCK_EVENT_REASONS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}

AGENT_CYCLE_DURATION = Metric("vigil.agent.cycle.duration", "s", G, "Time the last cycle spent sampling.")
AGENT_SPOOL_BATCHES = Metric("vigil.agent.spool.batches", "{batch}", G, "Batches waiting in the spool.")
AGENT_SPOOL_BYTES = Metric("vigil.agent.spool.bytes", "By", G, "Bytes waiting in the spool.")
AGENT_BATCHES_DROPPED = Metric(
    "vigil.agent.batches.dropped", "{batch}", C, "Batches given up, by `reason` (spool_full, expired, rejected)."
)
AGENT_EXPORT_FAILURES = Metric("vigil.agent.export.failures", "{request}", C, "Export attempts that failed.")
AGENT_POINTS_REJECTED = Metric(
    "vigil.agent.points.rejected", "{point}", C, "Points the collector refused in partial successes."
)
AGENT_SCRAPE_UP = Metric("vigil.agent.scrape.up", "1", G, "1 when the last scrape of `llm.endpoint` succeeded.")
AGENT_SCRAPE_DURATION = Metric("vigil.agent.scrape.duration", "s", G, "Time the last scrape of `llm.endpoint` took.")

LLM_TTFT = Metric("llm.time_to_first_token", "s", H, "Time from request arrival to its first output token.")
LLM_ITL = Metric("llm.inter_token_latency", "s", H, "Time between consecutive output tokens of a request.")
LLM_E2E = Metric("llm.e2e_latency", "s", H, "Time from request arrival to its last token.")
LLM_QUEUE_TIME = Metric("llm.queue_time", "s", H, "Time a request waited before its first scheduling.")
LLM_RUNNING = Metric("llm.requests.running", "{request}", G, "Requests in the running batch.")
LLM_WAITING = Metric("llm.requests.waiting", "{request}", G, "Requests queued, waiting for the batch.")
LLM_KV_USAGE = Metric("llm.kv_cache.usage", "1", G, "Fraction of the KV cache in use (0 to 1).")
LLM_PREEMPTIONS = Metric("llm.preemptions", "{preemption}", C, "Requests preempted to free KV cache.")
LLM_TOKENS_PROMPT = Metric("llm.tokens.prompt", "{token}", C, "Prompt (prefill) tokens processed.")
LLM_TOKENS_GENERATED = Metric("llm.tokens.generated", "{token}", C, "Output tokens generated.")
LLM_FINISHED = Metric(
    "llm.requests.finished",
    "{request}",
    C,
    "Requests finished, by `outcome`: stop, length, abort, error, or success where the engine gives no reason.",
)
LLM_PREFIX_QUERIES = Metric("llm.prefix_cache.queries", "{token}", C, "Tokens looked up in the prefix cache.")
LLM_PREFIX_HITS = Metric("llm.prefix_cache.hits", "{token}", C, "Tokens found in the prefix cache.")

CATALOGUE: dict[str, Metric] = {
    m.name: m
    for m in (
        GPU_UP,
        GPU_UTILIZATION,
        GPU_MEMORY_UTILIZATION,
        GPU_ENCODER_UTILIZATION,
        GPU_DECODER_UTILIZATION,
        GPU_MEMORY_USED,
        GPU_MEMORY_FREE,
        GPU_MEMORY_RESERVED,
        GPU_MEMORY_TOTAL,
        GPU_CLOCK_SM,
        GPU_CLOCK_MEMORY,
        GPU_TEMPERATURE,
        GPU_MEMORY_TEMPERATURE,
        GPU_POWER_DRAW,
        GPU_POWER_INSTANT,
        GPU_POWER_LIMIT,
        GPU_ENERGY,
        GPU_PCIE_REPLAY,
        GPU_PCIE_TX,
        GPU_PCIE_RX,
        GPU_NVLINK_TX,
        GPU_NVLINK_RX,
        GPU_ECC_CORRECTED,
        GPU_ECC_UNCORRECTED,
        GPU_REMAPPED_CORRECTABLE,
        GPU_REMAPPED_UNCORRECTABLE,
        GPU_REMAPPED_PENDING,
        GPU_REMAPPED_FAILURE,
        GPU_CLOCK_EVENT_REASONS,
        GPU_CLOCK_EVENT_REASON_ACTIVE,
        *GPU_VIOLATIONS.values(),
        GPU_XID_ERRORS,
        GPU_RECOVERY_ACTION,
        GPU_SM_ACTIVE,
        GPU_SM_OCCUPANCY,
        GPU_TENSOR_ACTIVE,
        GPU_DRAM_ACTIVE,
        GPU_PROCESSES,
        GPU_PROCESS_MEMORY,
        AGENT_CYCLE_DURATION,
        AGENT_SPOOL_BATCHES,
        AGENT_SPOOL_BYTES,
        AGENT_BATCHES_DROPPED,
        AGENT_EXPORT_FAILURES,
        AGENT_POINTS_REJECTED,
        AGENT_SCRAPE_UP,
        AGENT_SCRAPE_DURATION,
        LLM_TTFT,
        LLM_ITL,
        LLM_E2E,
        LLM_QUEUE_TIME,
        LLM_RUNNING,
        LLM_WAITING,
        LLM_KV_USAGE,
        LLM_PREEMPTIONS,
        LLM_TOKENS_PROMPT,
        LLM_TOKENS_GENERATED,
        LLM_FINISHED,
        LLM_PREFIX_QUERIES,
        LLM_PREFIX_HITS,
    )
}

GPU_METRICS = tuple(m for name, m in CATALOGUE.items() if name.startswith("gpu."))
AGENT_METRICS = tuple(m for name, m in CATALOGUE.items() if name.startswith("vigil.agent."))
LLM_METRICS = tuple(m for name, m in CATALOGUE.items() if name.startswith("llm."))

# XID codes fleets act on (REFERENCE.md §3): meaning and the usual action.
XIDS: dict[int, tuple[str, str]] = {
    13: ("graphics engine exception", "restart the application"),
    31: ("GPU memory page fault", "restart the application"),
    43: ("GPU stopped processing", "watch"),
    48: ("double-bit ECC error", "drain, reset GPU"),
    63: ("ECC page retirement or row remap recorded", "watch"),
    64: ("retirement or remap recording failed", "reset GPU"),
    74: ("NVLink error", "drain, check links"),
    79: ("GPU fell off the bus", "drain node, reboot"),
    92: ("high single-bit ECC rate", "watch"),
    94: ("contained ECC error", "restart the application"),
    95: ("uncontained ECC error", "reset GPU"),
    109: ("context-switch timeout", "reset GPU"),
    119: ("GSP RPC timeout", "reset GPU"),
    120: ("GSP error", "reset GPU"),
}


# ---- engine metrics → common names -------------------------------------------------------------


class Part(StrEnum):
    """Which part of a Prometheus family feeds a common metric."""

    VALUE = "value"  # a gauge's or counter's value, or a whole histogram
    SUM = "sum"  # a histogram's `_sum`, as a counter (TGI counts tokens only in histograms)


@dataclass(frozen=True)
class EngineRule:
    """One engine family (its name as `prometheus_client` parses it: counters without `_total`)
    feeding one common metric.

    `match` selects series by label value; `labels` renames labels onto common attributes (labels
    not named are kept as they are, except those in `match`); `constant` adds fixed attributes;
    `scale` converts units (Triton's milliseconds to seconds: histogram bounds and sums).
    """

    source: str
    target: str
    match: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    constant: tuple[tuple[str, str], ...] = ()
    scale: float = 1.0
    part: Part = Part.VALUE


@dataclass(frozen=True)
class Engine:
    name: str
    # A family whose name starts with one of these identifies the engine (first engine wins).
    prefixes: tuple[str, ...]
    rules: tuple[EngineRule, ...] = field(default=())


def _vllm_rules(prefix: str = "vllm:") -> tuple[EngineRule, ...]:
    labels = (("model_name", LLM_MODEL), ("engine", "llm.engine_index"))
    r = lambda source, target, **kw: EngineRule(f"{prefix}{source}", target, labels=labels, **kw)  # noqa: E731
    return (
        r("time_to_first_token_seconds", LLM_TTFT.name),
        r("inter_token_latency_seconds", LLM_ITL.name),
        r("time_per_output_token_seconds", LLM_ITL.name),  # before vLLM 0.10
        r("e2e_request_latency_seconds", LLM_E2E.name),
        r("request_queue_time_seconds", LLM_QUEUE_TIME.name),
        r("num_requests_running", LLM_RUNNING.name),
        r("num_requests_waiting", LLM_WAITING.name),
        r("kv_cache_usage_perc", LLM_KV_USAGE.name),
        r("gpu_cache_usage_perc", LLM_KV_USAGE.name),  # before vLLM 0.10
        r("num_preemptions", LLM_PREEMPTIONS.name),
        r("prompt_tokens", LLM_TOKENS_PROMPT.name),
        r("generation_tokens", LLM_TOKENS_GENERATED.name),
        r("prefix_cache_queries", LLM_PREFIX_QUERIES.name),
        r("prefix_cache_hits", LLM_PREFIX_HITS.name),
        EngineRule(
            f"{prefix}request_success",
            LLM_FINISHED.name,
            labels=(*labels, ("finished_reason", OUTCOME)),
        ),
    )


_SGL = (("model_name", LLM_MODEL),)
_TRITON = (("model", LLM_MODEL), ("version", "llm.model_version"))
_TRITON_RULES = (
    EngineRule("nv_inference_request_success", LLM_FINISHED.name, labels=_TRITON, constant=((OUTCOME, "success"),)),
    EngineRule(
        "nv_inference_request_failure",
        LLM_FINISHED.name,
        labels=(*_TRITON, ("reason", ERROR_TYPE)),
        constant=((OUTCOME, "error"),),
    ),
    EngineRule("nv_inference_first_response_histogram_ms", LLM_TTFT.name, labels=_TRITON, scale=1e-3),
)

ENGINES: tuple[Engine, ...] = (
    # Vigil's reference workload serves vLLM's names; its own families start with `vigil_workload`.
    Engine("vigil-workload", ("vigil_workload",), _vllm_rules()),
    Engine("vllm", ("vllm:",), _vllm_rules()),
    Engine(
        "sglang",
        ("sglang:",),
        (
            EngineRule("sglang:time_to_first_token_seconds", LLM_TTFT.name, labels=_SGL),
            EngineRule("sglang:inter_token_latency_seconds", LLM_ITL.name, labels=_SGL),
            EngineRule("sglang:time_per_output_token_seconds", LLM_ITL.name, labels=_SGL),
            EngineRule("sglang:e2e_request_latency_seconds", LLM_E2E.name, labels=_SGL),
            EngineRule("sglang:num_running_reqs", LLM_RUNNING.name, labels=_SGL),
            EngineRule("sglang:num_queue_reqs", LLM_WAITING.name, labels=_SGL),
            EngineRule("sglang:token_usage", LLM_KV_USAGE.name, labels=_SGL),
            EngineRule("sglang:prompt_tokens", LLM_TOKENS_PROMPT.name, labels=_SGL),
            EngineRule("sglang:generation_tokens", LLM_TOKENS_GENERATED.name, labels=_SGL),
            EngineRule("sglang:num_requests", LLM_FINISHED.name, labels=_SGL, constant=((OUTCOME, "success"),)),
            EngineRule("sglang:num_aborted_requests", LLM_FINISHED.name, labels=_SGL, constant=((OUTCOME, "abort"),)),
        ),
    ),
    Engine(
        "tgi",
        ("tgi_",),
        (
            EngineRule("tgi_request_mean_time_per_token_duration", LLM_ITL.name),
            EngineRule("tgi_request_duration", LLM_E2E.name),
            EngineRule("tgi_request_queue_duration", LLM_QUEUE_TIME.name),
            EngineRule("tgi_batch_current_size", LLM_RUNNING.name),
            EngineRule("tgi_queue_size", LLM_WAITING.name),
            EngineRule("tgi_request_input_length", LLM_TOKENS_PROMPT.name, part=Part.SUM),
            EngineRule("tgi_request_generated_tokens", LLM_TOKENS_GENERATED.name, part=Part.SUM),
            EngineRule("tgi_request_success", LLM_FINISHED.name, constant=((OUTCOME, "success"),)),
            EngineRule(
                "tgi_request_failure", LLM_FINISHED.name, labels=(("err", ERROR_TYPE),), constant=((OUTCOME, "error"),)
            ),
        ),
    ),
    Engine(
        "tensorrt-llm",
        ("nv_trt_llm_",),
        (
            EngineRule(
                "nv_trt_llm_request_metrics", LLM_RUNNING.name, match=(("request_type", "active"),), labels=_TRITON
            ),
            EngineRule(
                "nv_trt_llm_request_metrics", LLM_WAITING.name, match=(("request_type", "waiting"),), labels=_TRITON
            ),
            EngineRule(
                "nv_trt_llm_kv_cache_block_metrics",
                LLM_KV_USAGE.name,
                match=(("kv_cache_block_type", "fraction"),),
                labels=_TRITON,
            ),
            *_TRITON_RULES,
        ),
    ),
    Engine(
        "triton",
        ("nv_inference_",),
        (
            EngineRule("nv_inference_pending_request_count", LLM_WAITING.name, labels=_TRITON),
            *_TRITON_RULES,
        ),
    ),
)


def detect_engine(family_names: list[str] | tuple[str, ...] | set[str]) -> Engine | None:
    """The first engine (in `ENGINES` order) one of whose prefixes starts some family name."""
    for engine in ENGINES:
        if any(name.startswith(engine.prefixes) for name in family_names):
            return engine
    return None
