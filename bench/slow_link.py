#!/usr/bin/env python3
"""A TCP relay that holds every chunk for DELAY_MS before passing it on, both ways.

    slow_link.py LISTEN_PORT TARGET_PORT DELAY_MS

An origin behind it is 2 x DELAY_MS of round trip away, as a real one is, while
everything stays on 127.0.0.1 and needs neither root nor tc/netem. Chunks keep their
order and the relay never waits for one before reading the next, so it adds latency,
not a bandwidth limit. bench/run starts it for the "origin far away" scenarios.
"""

import asyncio
import sys


async def pump(reader, writer, delay):
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def deliver():
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    delivering = asyncio.create_task(deliver())
    try:
        while True:
            data = await reader.read(65536)
            queue.put_nowait((loop.time() + delay, data))
            if not data:
                break
        await delivering
    except (ConnectionError, asyncio.CancelledError):
        delivering.cancel()


async def main(listen, target, delay):
    async def serve(client_reader, client_writer):
        try:
            origin_reader, origin_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pump(client_reader, origin_writer, delay),
            pump(origin_reader, client_writer, delay),
            return_exceptions=True,
        )
        origin_writer.close()
        client_writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", listen, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000))
