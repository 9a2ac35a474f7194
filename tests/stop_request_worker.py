"""A process that runs empty 'rounds' under `pggan.training.preemption.StopRequest` until it is asked to stop.

    python -m tests.stop_request_worker PROCESS_ID NUM_PROCESSES PORT

Logs 'round K' after every round and finally 'stopped after K rounds by SIGNAL' (on stderr).
With NUM_PROCESSES > 1 it joins a JAX multi-process run (gloo) on 127.0.0.1:PORT.
"""

import sys
import time

import jax

process_id, num_processes, port = map(int, sys.argv[1:4])
if num_processes > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=num_processes, process_id=process_id)

# Imported after jax.distributed.initialize, as the launcher does: they touch the devices.
from pggan import parallel  # noqa: E402
from pggan.training import preemption  # noqa: E402

rounds = 0
with preemption.StopRequest(parallel.make_mesh()) as stop:
    while not stop.requested:
        time.sleep(0.02)  # the round's work
        stop.after_round()
        rounds += 1
        print(f"round {rounds}", file=sys.stderr, flush=True)
print(f"stopped after {rounds} rounds by {stop.signal_name}", file=sys.stderr, flush=True)
