"""The simulator's time account: an event-driven model of the accelerator.

Everything here follows "The timing model" of docs/accelerator.md and reads
only numbers (shapes, sizes, attributes), never tensor values, so that a
timing-only run and a full run give the same latency by construction.

Two parts:

* `TimingModel`: the cost equations of one target (MAC array cycles with lane
  padding, vector unit cycles, DMA and interconnect parameters, launch,
  dispatch and barrier costs), in nanoseconds.
* `Machine`: runs kernels one after another. A kernel is a list of
  instructions (`Instr`) that every core executes in order (SPMD); cores
  `active` and above execute only the collectives. `Machine.run_kernel`
  simulates all cores of the kernel together: compute instructions advance a
  core's own clock; DMAs pay `dma_latency` and then share the DRAM bandwidth
  with every other transfer in flight (processor sharing: while `m` transfers
  move data each progresses at `BW / m`); a multicast load (cores reading the
  same DRAM slice) is one transfer for all its cores, started when the last of
  them arrives; barriers release every core at
  `max(arrival) + barrier_base + barrier_per_core * n`; an exchange is a
  barrier followed by an interconnect transfer of the bytes a core receives
  (latency, then a share of the interconnect bandwidth).

Multicast. A load instruction may carry, per core, the leader of its
multicast set (`Instr.group`: the first active core reading the same slice).
The cores of a set of two or more are a collective of that instruction: each
waits (idle, recorded as "sync") until the last one reaches it; then one
transfer pays `dma_latency` once, moves its bytes once through the shared
DRAM bandwidth (it counts as one transfer in the processor sharing), and
completes for every core of the set at the same time. Each core's DMA busy
time is from the transfer's start to its end. The DRAM byte counters count a
multicast slice once. A set of one core is an ordinary (unicast) transfer.

Conventions the spec leaves open, fixed here:

* a DMA whose size is 0 for a core (and an exchange that brings a core no
  bytes) is not issued on that core: it costs nothing;
* `accel.alloc` is a declaration, not an instruction: no time, not counted;
* a multicast load counts as an executed instruction on each of its cores;
* a kernel's latency in the report includes its launch cost, so the kernel
  latencies add up to the total.

Processor sharing is event-driven with virtual time: a resource keeps `S`, the
bytes each in-flight transfer has received so far (growing at `BW / m`); a
transfer joining with `n` bytes finishes when `S` reaches `S_join + n`. The
next event is the earliest of the next join (a DMA's latency ends), the next
resumption (a barrier release) and the next transfer completion; `S` is
re-divided at each one.
"""

from __future__ import annotations

import functools
import heapq
import math
from dataclasses import dataclass, field
from typing import NamedTuple

from dlfusion.errors import DlfusionError
from dlfusion.targets import AcceleratorTarget

# instruction codes
COMPUTE = 0
DMA = 1
BARRIER = 2
EXCHANGE = 3

# units (busy-time accounts of a core)
UNITS = ("dma", "mac", "vector", "interconnect")
SYNC = "sync"  # waiting at a barrier or for a multicast's other cores: not busy

# event kinds of the main queue
_JOIN_DRAM = 0
_JOIN_IC = 1
_RESUME = 2

_INF = math.inf


# --------------------------------------------------------------------------
# cost equations
# --------------------------------------------------------------------------


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


#: vector-unit work per output element of `accel.eltwise` kinds (and fill)
ELTWISE_WORK = {
    "fill": 1,
    "relu": 1,
    "clip": 1,
    "add": 1,
    "sub": 1,
    "mul": 1,
    "leaky_relu": 1,
    "div": 2,
    "hard_sigmoid": 2,
    "hard_swish": 2,
    "sigmoid": 4,
}


@dataclass(frozen=True)
class TimingModel:
    """The cost equations of docs/accelerator.md for one target; times in ns."""

    target: AcceleratorTarget
    element_bytes: int

    @property
    def clock_ghz(self) -> float:
        return self.target.clock_ghz

    # -- MAC array ---------------------------------------------------------
    def conv_cycles(self, n: int, ho: int, wo: int, kh: int, kw: int, co: int, ci_g: int, groups: int) -> int:
        """N·Ho·Wo·kh·kw · ceil(Co_g/Lo) · ceil(Ci_g/Li) · g; depthwise
        (Ci_g = 1): N·Ho·Wo·kh·kw · ceil(Co/Lo)."""
        lo, li = self.target.mac_lanes_out, self.target.mac_lanes_in
        base = n * ho * wo * kh * kw
        if ci_g == 1:
            return base * ceil_div(co, lo)
        co_g = co // groups
        return base * ceil_div(co_g, lo) * ceil_div(ci_g, li) * groups

    def matmul_cycles(self, m: int, n: int, k: int) -> int:
        """M · ceil(N/Lo) · ceil(K/Li)."""
        return m * ceil_div(n, self.target.mac_lanes_out) * ceil_div(k, self.target.mac_lanes_in)

    # -- vector unit ---------------------------------------------------------
    def vector_cycles(self, n_out: int, work: int) -> int:
        """ceil(n / V) · w."""
        return ceil_div(n_out, self.target.vector_lanes) * work

    # -- time ------------------------------------------------------------------
    def compute_ns(self, cycles: int) -> float:
        """(instruction_overhead + cycles) / f."""
        return (self.target.instruction_overhead_cycles + cycles) / self.target.clock_ghz

    def dma_bytes(self, elements: int) -> int:
        return elements * self.element_bytes

    @property
    def dram_bytes_per_ns(self) -> float:
        return self.target.dram_bandwidth_gbps

    @property
    def ic_bytes_per_ns(self) -> float:
        return self.target.interconnect_bandwidth_gbps

    @property
    def dma_latency_ns(self) -> float:
        return self.target.dma_latency_ns

    @property
    def ic_latency_ns(self) -> float:
        return self.target.interconnect_latency_ns

    @property
    def launch_ns(self) -> float:
        return self.target.kernel_launch_us * 1e3

    @property
    def dispatch_ns(self) -> float:
        return self.target.core_dispatch_us * 1e3

    def barrier_ns(self, cores: int) -> float:
        """barrier_base + barrier_per_core · n."""
        return (self.target.barrier_base_us + self.target.barrier_per_core_us * cores) * 1e3


# --------------------------------------------------------------------------
# instructions and kernels
# --------------------------------------------------------------------------


class Instr(NamedTuple):
    """One instruction of a kernel's SPMD stream.

    COMPUTE: `payload` is the duration in ns (the same on every active core).
    DMA: `payload` is the bytes per core (a tuple of length `cores`; 0 for a
    core that moves nothing); `group` is None (every transfer unicast) or,
    per core, the leader of its multicast set (see `multicast_leaders`).
    EXCHANGE: `payload` is the bytes each core receives (length `cores`).
    BARRIER: `payload` is None.
    """

    code: int
    label: str
    unit: str
    payload: object
    group: tuple[int, ...] | None = None


def multicast_leaders(bytes_per_core, slices, active: int) -> tuple[int, ...] | None:
    """Per core, the first active core (with bytes to move) whose slice key
    equals its own: cores with the same leader read one DRAM slice together.
    `slices[c]` is any hashable key of core `c`'s source slice (None: its
    own). Cores `active` and above, and cores that move nothing, lead
    themselves. None when no two cores share a slice (all unicast)."""
    first: dict[object, int] = {}
    leaders = list(range(len(bytes_per_core)))
    shared = False
    for c in range(min(active, len(bytes_per_core))):
        key = slices[c]
        if key is None or not bytes_per_core[c]:
            continue
        lead = first.setdefault(key, c)
        if lead != c:
            leaders[c] = lead
            shared = True
    return tuple(leaders) if shared else None


@functools.lru_cache(maxsize=1024)
def _multicast_sets(moved: tuple[int, ...], group: tuple[int, ...]) -> tuple[int, dict[int, int]]:
    """For a load moving `moved[c]` bytes on active core `c` with multicast
    leaders `group`: the bytes read from DRAM (a shared slice once) and the
    multicast sets of two or more cores, {leader: size}. Cached (the same
    shapes recur); the dict returned is shared: do not modify it."""
    sizes: dict[int, int] = {}
    total = 0
    for c, nbytes in enumerate(moved):
        if nbytes:
            lead = group[c]
            sizes[lead] = sizes.get(lead, 0) + 1
            if lead == c:
                total += nbytes
    return total, {lead: size for lead, size in sizes.items() if size > 1}


class Event(NamedTuple):
    """One entry of a core's timeline; times in ns."""

    core: int
    kernel: int
    label: str
    unit: str  # one of UNITS, or "sync" for a barrier wait
    start: float
    end: float


@dataclass
class KernelStats:
    name: str
    cores: int
    active: int
    launch_start_ns: float = 0.0  # when the launch began (end of the previous kernel)
    start_ns: float = 0.0  # start_k: core 0 is dispatched
    end_ns: float = 0.0
    dram_bytes_read: int = 0  # a multicast slice counts once
    dram_bytes_written: int = 0
    interconnect_bytes: int = 0
    multicast_transfers: int = 0  # loads delivered to two or more cores at once
    multicast_bytes_saved: int = 0  # DRAM reads a per-core load would have added
    instructions: int = 0  # executed instruction instances, over all cores

    @property
    def latency_ns(self) -> float:
        """end_k - end_{k-1}: launch, dispatch and execution."""
        return self.end_ns - self.launch_start_ns


@dataclass
class KernelProgram:
    """A kernel's instruction stream, as recorded by the interpreter."""

    name: str
    cores: int
    active: int
    instrs: list[Instr] = field(default_factory=list)

    def compute(self, label: str, unit: str, ns: float) -> None:
        self.instrs.append(Instr(COMPUTE, label, unit, ns))

    def dma(self, label: str, bytes_per_core: tuple[int, ...], slices=None) -> None:
        """A DMA moving `bytes_per_core`. For a load, `slices` gives each
        core's source-slice key (e.g. its (src_offsets, sizes)); active cores
        with equal keys read the slice once (multicast). None: all unicast."""
        group = None
        if slices is not None:
            if label == "store":
                raise ValueError("stores are never multicast")
            group = multicast_leaders(bytes_per_core, slices, self.active)
        self.instrs.append(Instr(DMA, label, "dma", bytes_per_core, group))

    def barrier(self) -> None:
        self.instrs.append(Instr(BARRIER, "barrier", SYNC, None))

    def exchange(self, bytes_per_core: tuple[int, ...]) -> None:
        self.instrs.append(Instr(EXCHANGE, "exchange", "interconnect", bytes_per_core))


class _Shared:
    """A bandwidth shared equally by the transfers in flight (processor
    sharing), with virtual time `S` = bytes received by each transfer.
    `next` is the time the first of them completes (inf: none in flight),
    updated by `join` and `pop`."""

    __slots__ = ("bw", "S", "t", "m", "heap", "next")

    def __init__(self, bytes_per_ns: float):
        self.bw = bytes_per_ns
        self.S = 0.0
        self.t = 0.0
        self.m = 0
        self.heap: list[tuple[float, int, int]] = []
        self.next = _INF

    def join(self, now: float, nbytes: int, seq: int, core: int) -> None:
        m = self.m
        if m:  # advance the virtual clock to `now`
            self.S += (now - self.t) * self.bw / m
        self.t = now
        heap = self.heap
        heapq.heappush(heap, (self.S + nbytes, seq, core))
        self.m = m = m + 1
        self.next = now + (heap[0][0] - self.S) * m / self.bw

    def pop(self, now: float) -> int:
        """The core (or multicast transfer) completing at `now` = `next`."""
        heap = self.heap
        tag, _, core = heapq.heappop(heap)
        self.m = m = self.m - 1
        self.t = now
        if m:
            self.S = tag
            self.next = now + (heap[0][0] - tag) * m / self.bw
        else:  # idle: restart the virtual clock (keeps the tags small)
            self.S = 0.0
            heap.clear()
            self.next = _INF
        return core


# --------------------------------------------------------------------------
# the machine
# --------------------------------------------------------------------------


class Machine:
    """Runs kernels in order and accounts time per core and unit."""

    def __init__(self, model: TimingModel, record_events: bool = True):
        self.model = model
        self.record_events = record_events
        self.now = 0.0  # end of the last kernel
        self.kernels: list[KernelStats] = []
        self.events: list[Event] = []
        n = model.target.cores
        self.busy: list[dict[str, float]] = [dict.fromkeys(UNITS, 0.0) for _ in range(n)]
        self.instructions = 0

    @property
    def total_ns(self) -> float:
        return self.now

    def run_kernel(self, prog: KernelProgram) -> KernelStats:
        """Simulate one kernel on all its cores; returns its statistics."""
        m = self.model
        n, active = prog.cores, prog.active
        if n > m.target.cores:
            raise DlfusionError(
                f"kernel '{prog.name}' uses {n} cores; target '{m.target.name}' has {m.target.cores}"
            )
        k = len(self.kernels)
        stats = KernelStats(prog.name, n, active, launch_start_ns=self.now)
        start = self.now + m.launch_ns
        stats.start_ns = start
        dispatch = m.dispatch_ns
        dma_lat, ic_lat = m.dma_latency_ns, m.ic_latency_ns
        barrier_cost = m.barrier_ns(n)
        record = self.record_events
        events = self.events
        busy = self.busy

        full = prog.instrs
        idle = [ins for ins in full if ins.code == BARRIER or ins.code == EXCHANGE]
        streams = [full if c < active else idle for c in range(n)]
        pc = [0] * n
        finish = [start] * n
        issue = [0.0] * n  # start of the DMA / interconnect transfer in flight
        label_of = [""] * n
        done = [False] * n

        # DRAM byte counters (whole kernel, over the active cores; a multicast
        # slice once), the executed instructions and the multicast sets:
        # instruction index -> {leader: size}
        mc_sets: dict[int, dict[int, int]] = {}
        executed = 0
        for idx, ins in enumerate(full):
            code = ins.code
            if code == DMA:
                moved = ins.payload[:active]
                executed += active - moved.count(0)  # not issued where 0
                if ins.group is None:
                    total = sum(moved)
                else:
                    total, sets = _multicast_sets(tuple(moved), tuple(ins.group[:active]))
                    if sets:
                        mc_sets[idx] = sets
                        stats.multicast_transfers += len(sets)
                        stats.multicast_bytes_saved += sum(
                            (size - 1) * moved[lead] for lead, size in sets.items()
                        )
                if ins.label == "store":
                    stats.dram_bytes_written += total
                else:
                    stats.dram_bytes_read += total
            elif code == COMPUTE:
                executed += active
            else:  # collectives: on every core
                executed += n
                if code == EXCHANGE:
                    stats.interconnect_bytes += sum(ins.payload)
        stats.instructions = executed

        dram = _Shared(m.dram_bytes_per_ns)
        ic = _Shared(m.ic_bytes_per_ns)
        # (time, seq, kind, who, bytes); `who` is a core, or n + the index of a
        # multicast transfer (for DRAM joins)
        queue: list[tuple[float, int, int, int, int]] = []
        seq = 0
        push, pop = heapq.heappush, heapq.heappop

        # multicast state: cores waiting at a set, keyed by (instruction, leader);
        # started transfers: their cores, start time and label
        mc_waiting: dict[tuple[int, int], list[tuple[int, float]]] = {}
        mc_cores: list[list[int]] = []
        mc_start: list[float] = []
        mc_label: list[str] = []

        # barrier state
        arrived: list[tuple[int, float]] = []
        pending_exchange: Instr | None = None

        def release(now_max: float) -> None:
            nonlocal seq, pending_exchange
            r = now_max + barrier_cost
            ins = pending_exchange
            for c, t_arr in arrived:
                if record:
                    events.append(Event(c, k, "barrier" if ins is None else "exchange.barrier", SYNC, t_arr, r))
                nbytes = ins.payload[c] if ins is not None else 0
                seq += 1
                if nbytes:
                    issue[c] = r
                    push(queue, (r + ic_lat, seq, _JOIN_IC, c, nbytes))
                else:
                    push(queue, (r, seq, _RESUME, c, 0))
            arrived.clear()
            pending_exchange = None

        def run_core(c: int, t: float) -> None:
            """Core `c` is free at time `t`: run it up to its next DMA or
            collective (compute only advances its own clock)."""
            nonlocal seq, pending_exchange
            s = streams[c]
            i = pc[c]
            b = busy[c]
            end_i = len(s)
            while i < end_i:
                code, label, unit, payload, group = s[i]
                i += 1
                if code == COMPUTE:
                    end = t + payload
                    b[unit] += payload
                    if record:
                        events.append(Event(c, k, label, unit, t, end))
                    t = end
                elif code == DMA:
                    nbytes = payload[c]
                    if not nbytes:
                        continue
                    pc[c] = i
                    if group is not None and i - 1 in mc_sets:
                        lead = group[c]
                        size = mc_sets[i - 1].get(lead, 1)
                        if size > 1:  # multicast: wait for the set's last core
                            key = (i - 1, lead)
                            waiting = mc_waiting.setdefault(key, [])
                            waiting.append((c, t))
                            if len(waiting) == size:
                                del mc_waiting[key]
                                t0 = max(a for _, a in waiting)
                                cores_ = sorted(cc for cc, _ in waiting)
                                if record:
                                    for cc, a in waiting:
                                        if a < t0:
                                            events.append(Event(cc, k, f"{label}.multicast.wait", SYNC, a, t0))
                                mc_cores.append(cores_)
                                mc_start.append(t0)
                                mc_label.append(f"{label}.multicast")
                                seq += 1
                                push(queue, (t0 + dma_lat, seq, _JOIN_DRAM, n + len(mc_cores) - 1, nbytes))
                            return
                    issue[c] = t
                    label_of[c] = label
                    seq += 1
                    push(queue, (t + dma_lat, seq, _JOIN_DRAM, c, nbytes))
                    return
                else:  # BARRIER or EXCHANGE
                    pc[c] = i
                    arrived.append((c, t))
                    if code == EXCHANGE:
                        pending_exchange = s[i - 1]
                    if len(arrived) == n:
                        release(max(a for _, a in arrived))
                    return
            pc[c] = i
            finish[c] = t
            done[c] = True

        for c in range(n):
            if streams[c]:
                run_core(c, start + c * dispatch)
            else:  # an idle core of a kernel without collectives
                finish[c] = start + c * dispatch
                done[c] = True

        while True:
            t_q = queue[0][0] if queue else _INF
            t_d = dram.next
            t_i = ic.next
            if t_d <= t_q and t_d <= t_i:
                if t_d == _INF:
                    break
                c = dram.pop(t_d)
                if c < n:
                    busy[c]["dma"] += t_d - issue[c]
                    if record:
                        events.append(Event(c, k, label_of[c], "dma", issue[c], t_d))
                    run_core(c, t_d)
                else:  # a multicast transfer completes for all its cores
                    j = c - n
                    t0, lab = mc_start[j], mc_label[j]
                    for cc in mc_cores[j]:
                        busy[cc]["dma"] += t_d - t0
                        if record:
                            events.append(Event(cc, k, lab, "dma", t0, t_d))
                    for cc in mc_cores[j]:
                        run_core(cc, t_d)
            elif t_i <= t_q:
                c = ic.pop(t_i)
                busy[c]["interconnect"] += t_i - issue[c]
                if record:
                    events.append(Event(c, k, "exchange", "interconnect", issue[c], t_i))
                run_core(c, t_i)
            else:
                t, _, kind, c, nbytes = pop(queue)
                seq += 1
                if kind == _JOIN_DRAM:
                    dram.join(t, nbytes, seq, c)
                elif kind == _JOIN_IC:
                    ic.join(t, nbytes, seq, c)
                else:
                    run_core(c, t)

        if not all(done):
            stuck = [c for c in range(n) if not done[c]]
            raise DlfusionError(
                f"kernel '{prog.name}': cores {stuck} never finished (unmatched collectives)"
            )
        stats.end_ns = max(finish)
        self.now = stats.end_ns
        self.instructions += executed
        self.kernels.append(stats)
        return stats
