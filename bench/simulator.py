"""Benchmark the Telegram simulator with flood limits off.

Measures, against a simulator running in its own process (as tgfleet's benchmarks use it):
- pushes/s delivered to one Telethon listener (NewMessage handler invocations),
- sends/s from one Telethon client (messages.sendMessage, many in flight),
- memory per connected, logged-in session (simulator RSS growth / sessions),
and, in the same run, a bare asyncio TCP echo of the same byte volume as the upper bound.

Run: ``.venv/bin/python bench/simulator.py [--pushes N] [--sends N] [--sessions N]``.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from telethon import TelegramClient, events
from telethon.tl import types

from tgfleet.simulator import SimulatorClient, aes_backend, new_client

INJECT_CHUNK = 500
SEND_WINDOW = 256
PUSH_FRAME_BYTES = 300  # about one pushed UpdateNewMessage, encrypted and framed


def start_process(args: list[str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def login(api: SimulatorClient, pem: Path, token: str, **kwargs: Any) -> TelegramClient:
    host, port = api.address
    client = new_client(host, port, pem, flood_sleep_threshold=0, **kwargs)
    await client.start(bot_token=token)
    return client


async def bench_pushes(api: SimulatorClient, pem: Path, count: int) -> float:
    bot, user = api.create_bot(), api.create_user("Bench", username="bench_pusher")
    client = await login(api, pem, bot["token"])
    done = asyncio.Event()
    seen = 0

    async def on_message(event: events.NewMessage.Event) -> None:
        nonlocal seen
        seen += 1
        if seen >= count:
            done.set()

    client.add_event_handler(on_message, events.NewMessage(incoming=True))
    await client.catch_up()
    start = time.perf_counter()
    for offset in range(0, count, INJECT_CHUNK):
        n = min(INJECT_CHUNK, count - offset)
        await asyncio.to_thread(api.send, user["id"], bot["id"], "push {i}", count=n)
    await asyncio.wait_for(done.wait(), timeout=300)
    elapsed = time.perf_counter() - start
    await client.disconnect()
    return count / elapsed


async def bench_sends(api: SimulatorClient, pem: Path, count: int) -> float:
    bot, user = api.create_bot(), api.create_user("Bench", username="bench_receiver")
    client = await login(api, pem, bot["token"], receive_updates=False)
    peer = await client.get_input_entity("bench_receiver")
    assert isinstance(peer, types.InputPeerUser)
    window = asyncio.Semaphore(SEND_WINDOW)

    async def send(i: int) -> None:
        async with window:
            await client.send_message(peer, f"send {i}")

    start = time.perf_counter()
    await asyncio.gather(*(send(i) for i in range(count)))
    elapsed = time.perf_counter() - start
    await client.disconnect()
    received = len(api.received(user["id"]))
    if received != count:
        raise RuntimeError(f"user received {received} of {count} sends")
    return count / elapsed


async def bench_sessions(api: SimulatorClient, pem: Path, pid: int, count: int) -> float:
    bot = api.create_bot()
    before = rss_kb(pid)
    clients = [await login(api, pem, bot["token"], receive_updates=False) for _ in range(count)]
    await asyncio.sleep(0.5)
    after = rss_kb(pid)
    connected = api.stats()["connections"]
    for client in clients:
        await client.disconnect()
    if connected < count:
        raise RuntimeError(f"only {connected} of {count} sessions connected")
    return (after - before) / count


# -- the upper bound: a bare asyncio echo of the same byte volume --------------------------


async def echo_server() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


async def bench_echo(port: int, count: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    frame = struct.pack("<i", PUSH_FRAME_BYTES - 4) + os.urandom(PUSH_FRAME_BYTES - 4)

    async def produce() -> None:
        for _ in range(count):
            writer.write(frame)
            await writer.drain()

    start = time.perf_counter()
    producer = asyncio.create_task(produce())
    for _ in range(count):
        (length,) = struct.unpack("<i", await reader.readexactly(4))
        await reader.readexactly(length)
    elapsed = time.perf_counter() - start
    await producer
    writer.close()
    return count / elapsed


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        pem = Path(tmp) / "sim.pem"
        sim, banner = start_process(
            ["-m", "tgfleet.simulator", "run", "--no-limits", "--rsa-key-out", str(pem)]
        )
        echo, echo_port = start_process([__file__, "--echo-server"])
        try:
            api = SimulatorClient(banner.rsplit("control=", 1)[1])
            print(f"simulator: {banner}; AES backend here: {aes_backend()}")
            kb = await bench_sessions(api, pem, sim.pid, args.sessions)
            print(f"memory per connected session:     {kb:8.1f} KB")
            pushes = await bench_pushes(api, pem, args.pushes)
            print(f"pushes delivered to one listener: {pushes:8.0f} /s  (goal >= 3000)")
            sends = await bench_sends(api, pem, args.sends)
            print(f"sends from one client:            {sends:8.0f} /s  (goal >= 1500)")
            echo_rate = await bench_echo(int(echo_port), args.pushes)
            print(f"bare asyncio echo, same bytes:    {echo_rate:8.0f} msgs/s (upper bound)")
            print(f"pushes / echo ratio:              {pushes / echo_rate:8.3f}")
        finally:
            for proc in (sim, echo):
                proc.terminate()
                proc.wait(timeout=10)
    return {
        "bench": "simulator",
        "pushes_per_s": round(pushes, 1),
        "sends_per_s": round(sends, 1),
        "echo_msgs_per_s": round(echo_rate, 1),
        "kb_per_session": round(kb, 1),
    }


if __name__ == "__main__":
    if sys.argv[1:] == ["--echo-server"]:
        asyncio.run(echo_server())
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=20_000)
    parser.add_argument("--sends", type=int, default=10_000)
    parser.add_argument("--sessions", type=int, default=100)
    logging.basicConfig(level=logging.ERROR)
    result = asyncio.run(main(parser.parse_args()))
    print(json.dumps(result))
