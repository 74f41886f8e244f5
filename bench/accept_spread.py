"""How new connections fall on server processes: one shared listening socket (what
`gateway serve --processes N` does) against one SO_REUSEPORT socket per process.

Each of ``--processes`` processes runs an asyncio server (the event loop uvicorn
runs, uvloop when installed) that answers every connection with its pid and keeps it
open, as a keep-alive client's connection stays. The client opens ``--connections``
connections at once, ``--rounds`` times per mode, and counts the connections per
process; with ``--busy`` one of the processes spins its loop between accepts, as a
process serving a long call does. Prints the counts; nothing is written to results/
(docs/decisions/0035 quotes a run).

    .venv/bin/python -m bench.accept_spread [--processes 2] [--connections 16]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import time
from collections import Counter


def _serve(sock: socket.socket | None, port: int, busy: bool) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(f"{os.getpid()}\n".encode())
        await writer.drain()
        await reader.read()  # held open until the client closes it
        writer.close()

    async def spin() -> None:
        while True:  # a loop kept busy: 5 ms of work, then a turn for the accepts
            end = time.perf_counter() + 0.005
            while time.perf_counter() < end:
                pass
            await asyncio.sleep(0)

    async def main() -> None:
        if sock is None:
            own = socket.socket()
            own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            own.bind(("127.0.0.1", port))
            server = await asyncio.start_server(answer, sock=own)
        else:
            server = await asyncio.start_server(answer, sock=sock)
        if busy:
            asyncio.get_running_loop().create_task(spin())
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _spread(port: int, connections: int) -> list[int]:
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
    try:
        pids = [int(s.makefile().readline()) for s in sockets]
    finally:
        for s in sockets:
            s.close()
    return sorted(Counter(pids).values(), reverse=True)


def run(mode: str, processes: int, connections: int, rounds: int, busy: bool) -> list[list[int]]:
    context = multiprocessing.get_context("spawn")
    shared = None
    if mode == "shared":
        shared = socket.socket()
        shared.bind(("127.0.0.1", 0))
        port = shared.getsockname()[1]
    else:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    children = [
        context.Process(target=_serve, args=(shared, port, busy and i == 0), daemon=True)
        for i in range(processes)
    ]
    for child in children:
        child.start()
    try:
        seen: set[int] = set()
        deadline = time.monotonic() + 60
        while len(seen) < processes and time.monotonic() < deadline:  # every one listening
            try:
                with socket.create_connection(("127.0.0.1", port)) as s:
                    seen.add(int(s.makefile().readline()))
            except OSError:
                time.sleep(0.05)
        return [_spread(port, connections) for _ in range(rounds)]
    finally:
        for child in children:
            child.kill()
            child.join()
        if shared is not None:
            shared.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()}")
    for busy in (False, True):
        for mode in ("shared", "reuseport"):
            spreads = run(mode, args.processes, args.connections, args.rounds, busy)
            label = f"{mode}{', one process busy' if busy else ''}"
            print(f"{label}: connections per process, per round: {spreads}", flush=True)


if __name__ == "__main__":
    main()
