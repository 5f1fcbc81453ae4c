"""The peers' side of the benchmark harness: one scenario for one Python peer, as JSON.

    python3 bench/peers.py PEER SCENARIO --tasks N --workers W [--ms MS]

PEER is multiprocessing, dask or ray (or tcp, relay and relay-unix: floors of the round trip, not peers); SCENARIO is
tiny, roundtrip or efficiency. The task
functions are the same no-op and CPU spin that DockerParallel's side runs.
"""
import argparse
import json
import statistics
import time


def noop(x):
    return x


def spin(ms):
    end = time.perf_counter() + ms / 1000
    count = 0
    while time.perf_counter() < end:
        count += 1
    return count & 1


def run_multiprocessing(scenario, tasks, workers, ms):
    import multiprocessing

    with multiprocessing.Pool(workers) as pool:
        pool.map(noop, range(workers * 4))  # warm-up: the workers exist
        return measure(scenario, tasks, ms,
                       batch=lambda xs: pool.map(noop, xs),
                       one=lambda x: pool.apply(noop, (x,)),
                       cpu=lambda xs: pool.map(spin, xs, chunksize=1))


def run_dask(scenario, tasks, workers, ms):
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.gather(client.map(noop, range(workers * 4), pure=False))
        return measure(scenario, tasks, ms,
                       batch=lambda xs: client.gather(client.map(noop, xs, pure=False)),
                       one=lambda x: client.submit(noop, x, pure=False).result(),
                       cpu=lambda xs: client.gather(client.map(spin, xs, pure=False)))


def run_ray(scenario, tasks, workers, ms):
    import ray

    ray.init(num_cpus=workers, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        remote_noop = ray.remote(noop)
        remote_spin = ray.remote(spin)
        ray.get([remote_noop.remote(i) for i in range(workers * 4)])
        return measure(scenario, tasks, ms,
                       batch=lambda xs: ray.get([remote_noop.remote(x) for x in xs]),
                       one=lambda x: ray.get(remote_noop.remote(x)),
                       cpu=lambda xs: ray.get([remote_spin.remote(x) for x in xs]))
    finally:
        ray.shutdown()


def listener(unix=False):
    """A listening socket: loopback TCP on a free port, or a unix domain socket in a new folder."""
    import socket
    import tempfile

    if unix:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(tempfile.mkdtemp() + "/relay.sock")
    else:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


def connect(server):
    import socket

    family = socket.AF_UNIX if server.family == socket.AF_UNIX else socket.AF_INET
    sock = socket.socket(family)
    sock.connect(server.getsockname())
    return nodelay(sock)


def nodelay(sock):
    import socket

    if sock.family != socket.AF_UNIX:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def echo_in_child(connect):
    """Forks a process that sends back what it receives on the socket `connect()` gives it,
    until the other side closes; returns its pid."""
    import os

    child = os.fork()
    if child == 0:
        connection = nodelay(connect())
        while True:
            data = connection.recv(64)
            if not data:
                os._exit(0)
            connection.sendall(data)
    return child


def ping(scenario, tasks, ms, client, children):
    """Measures messages sent on `client` and answered, then reaps the child processes."""
    import os

    if scenario != "roundtrip":
        raise SystemExit("the floors measure the round trip only")

    def one(x):
        client.sendall(b"%d" % x)
        return client.recv(64)

    try:
        return measure(scenario, tasks, ms, batch=None, one=one, cpu=None)
    finally:
        client.close()
        for child in children:
            os.waitpid(child, 0)


def run_tcp(scenario, tasks, workers, ms):
    """Not a peer: a message to another process and back over loopback TCP, the floor under any
    round trip between two processes here. A broker's round trip (client, server, worker, server,
    client) makes two of these."""
    server = listener()
    child = echo_in_child(lambda: server.accept()[0])
    return ping(scenario, tasks, ms, connect(server), [child])


def run_relay(scenario, tasks, workers, ms, unix=False):
    """Not a peer: a message from a client through a relay process to a worker process and back,
    over loopback TCP (or unix domain sockets). The floor under any brokered round trip here
    (client, broker, worker, broker, client): DockerParallel's, Dask's, Ray's, and mirai's
    through its dispatcher."""
    import os

    for_worker, for_client = listener(unix), listener(unix)
    worker = echo_in_child(lambda: connect(for_worker))
    relay = os.fork()
    if relay == 0:
        to_worker = nodelay(for_worker.accept()[0])
        to_client = nodelay(for_client.accept()[0])
        while True:
            data = to_client.recv(64)
            if not data:
                to_worker.close()
                os._exit(0)
            to_worker.sendall(data)
            to_client.sendall(to_worker.recv(64))
    try:
        return ping(scenario, tasks, ms, connect(for_client), [relay, worker])
    finally:
        if unix:
            import shutil

            for server in (for_worker, for_client):
                shutil.rmtree(os.path.dirname(server.getsockname()), ignore_errors=True)


def run_relay_unix(scenario, tasks, workers, ms):
    """The relay's floor over unix domain sockets, as a local DockerParallel cluster talks."""
    return run_relay(scenario, tasks, workers, ms, unix=True)


def measure(scenario, tasks, ms, batch, one, cpu):
    if scenario == "tiny":
        start = time.perf_counter()
        out = batch(list(range(tasks)))
        elapsed = time.perf_counter() - start
        assert len(out) == tasks
        return {"tasks": tasks, "seconds": elapsed, "tasks_per_second": tasks / elapsed}
    if scenario == "roundtrip":
        latencies = []
        for i in range(tasks + 50):
            start = time.perf_counter()
            one(i)
            if i >= 50:
                latencies.append((time.perf_counter() - start) * 1e6)
        latencies.sort()
        return {"median_us": statistics.median(latencies), "p99_us": latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)]}
    if scenario == "efficiency":
        workers = ARGS.workers
        start = time.perf_counter()
        cpu([ms] * tasks)
        elapsed = time.perf_counter() - start
        ideal = tasks * ms / 1000 / workers
        return {"seconds": elapsed, "ideal_seconds": ideal, "efficiency": ideal / elapsed}
    raise SystemExit(f"unknown scenario {scenario}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("peer", choices=["multiprocessing", "dask", "ray", "tcp", "relay", "relay-unix"])
    parser.add_argument("scenario", choices=["tiny", "roundtrip", "efficiency"])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ms", type=int, default=50)
    ARGS = parser.parse_args()
    runner = {"multiprocessing": run_multiprocessing, "dask": run_dask, "ray": run_ray, "tcp": run_tcp, "relay": run_relay,
              "relay-unix": run_relay_unix}[ARGS.peer]
    print(json.dumps(runner(ARGS.scenario, ARGS.tasks, ARGS.workers, ARGS.ms), sort_keys=True))
