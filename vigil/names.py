"""The metric catalogue: every name the GPU agent emits, with its unit, kind and description.

Dashboards, alert rules and SLOs use these names, never an engine's own, so they work for any
engine (the agent's scraper, `gpu_agent/engines.py`, maps each engine's metrics onto the `llm.*`
names). OTel style: dotted lower-case names, UCUM units (`%`, `By`, `W`, `J`, `MHz`, `Cel`, `s`,
`1` for ratios and flags, `{thing}` for counts). Every `Metric` registers itself in `CATALOGUE`.

GPU series carry `gpu.index`, `gpu.uuid`, `gpu.pci_bus_id` and `gpu.model` (MIG instances add
`gpu.mig.*`); the host (`host.name`), driver version, `--label` pairs and `vigil.simulated` are
resource attributes. Engine series carry `llm.engine` and `llm.endpoint`, plus `llm.model` where
the engine names its model.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    GAUGE = "gauge"
    COUNTER = "counter"  # monotonic, cumulative
    HISTOGRAM = "histogram"


class Catalogue(Mapping[str, "Metric"]):
    """Every `Metric` ever created, by name, in the order they were defined.

    Filled by `Metric` itself, so no hand-kept list can miss one. A second metric under a name
    already taken is refused when it is defined (at import), never found out in a sampling loop.
    """

    def __init__(self) -> None:
        self._by_name: dict[str, Metric] = {}

    def register(self, metric: Metric) -> None:
        if metric.name in self._by_name:
            raise ValueError(f"metric {metric.name!r} is defined twice")
        self._by_name[metric.name] = metric

    def __getitem__(self, name: str) -> Metric:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def under(self, prefix: str) -> tuple[Metric, ...]:
        """The metrics defined so far whose names start with `prefix`."""
        return tuple(m for name, m in self._by_name.items() if name.startswith(prefix))


CATALOGUE = Catalogue()


# Identity, not value, equality: each metric is one object (names are unique), and snapshots are
# keyed by these objects, so hashing must cost nothing in the sampling loop.
@dataclass(frozen=True, eq=False)
class Metric:
    name: str
    unit: str
    kind: Kind
    description: str

    def __post_init__(self) -> None:
        CATALOGUE.register(self)

    def __repr__(self) -> str:
        return f"Metric({self.name!r})"


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

GPU_METRICS = CATALOGUE.under("gpu.")
AGENT_METRICS = CATALOGUE.under("vigil.agent.")
LLM_METRICS = CATALOGUE.under("llm.")

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
