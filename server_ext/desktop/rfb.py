"""A minimal RFB 3.8 (VNC) client, to probe and measure a desktop.

Enough of RFC 6143 to check from a script that a desktop is up and drawn, and
to measure it: the version and security handshake (type None: the Jupyter
server already authenticated the websocket), 32-bit true colour, Raw
encoding, full framebuffer requests. websockify carries the TCP stream in
binary messages of arbitrary size, so reads are buffered across messages.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

VERSION = b"RFB 003.008\n"
SECURITY_NONE = 1
ENCODING_RAW = 0
# 32 bits per pixel, depth 24, little-endian, true colour, 8 bits per channel
PIXEL_FORMAT = struct.pack(">BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)


class RFBError(Exception):
    """The desktop answered something a VNC server should not; says what."""

    user_error = True


@dataclass
class Frame:
    width: int
    height: int
    pixels: bytes  # BGRX, row-major

    def distinct_colours(self, step: int = 97) -> int:
        """How many colours a sample of pixels has (1: a blank screen)."""
        px = self.pixels
        return len({px[i : i + 3] for i in range(0, len(px) - 3, 4 * step)})

    def is_blank(self) -> bool:
        return self.distinct_colours() <= 1


class RFBClient:
    """One VNC connection: through ``ws(s)://.../desktop-websockify/`` or on the unix socket."""

    def __init__(self, recv, send, close, timeout: float):
        self._recv, self._send, self._close = recv, send, close  # transport: bytes in, bytes out
        self._buffer = bytearray()
        self.timeout = timeout
        self.width = self.height = 0
        self.name = ""

    @classmethod
    async def connect(cls, url: str, headers: dict | None = None, timeout: float = 30.0) -> "RFBClient":
        """Through the Jupyter server's websocket (``headers`` carry the token)."""
        request = HTTPRequest(url, headers=headers or {}, connect_timeout=timeout, request_timeout=timeout)
        ws = await asyncio.wait_for(websocket_connect(request, max_message_size=64 * 1024 * 1024), timeout)

        async def send(data):
            await ws.write_message(data, binary=True)

        return await cls(ws.read_message, send, ws.close, timeout)._start()

    @classmethod
    async def connect_unix(cls, path: str, timeout: float = 30.0) -> "RFBClient":
        """Straight to the VNC server's unix socket (the benchmark's reference; same user only)."""
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), timeout)

        async def recv():
            return await reader.read(1 << 20) or None

        async def send(data):
            writer.write(data)
            await writer.drain()

        return await cls(recv, send, writer.close, timeout)._start()

    async def _start(self) -> "RFBClient":
        try:
            await self._handshake()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        self._close()

    async def _read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            msg = await asyncio.wait_for(self._recv(), self.timeout)
            if msg is None:
                raise RFBError("the desktop closed the connection")
            self._buffer += msg if isinstance(msg, bytes) else msg.encode()
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    async def _write(self, data: bytes) -> None:
        await asyncio.wait_for(self._send(data), self.timeout)

    async def _handshake(self) -> None:
        version = await self._read(12)
        if not version.startswith(b"RFB "):
            raise RFBError(f"not a VNC server (greeting {version!r})")
        await self._write(VERSION)
        (count,) = struct.unpack(">B", await self._read(1))
        if count == 0:
            (length,) = struct.unpack(">I", await self._read(4))
            raise RFBError(f"VNC server refused: {(await self._read(length)).decode(errors='replace')}")
        types = await self._read(count)
        if SECURITY_NONE not in types:
            raise RFBError(f"VNC server wants authentication {list(types)}; the proxy expects SecurityTypes None")
        await self._write(struct.pack(">B", SECURITY_NONE))
        (result,) = struct.unpack(">I", await self._read(4))
        if result != 0:
            raise RFBError("VNC security handshake failed")
        await self._write(b"\x01")  # shared: other viewers stay connected
        self.width, self.height = struct.unpack(">HH", await self._read(4))
        await self._read(16)  # the server's pixel format; we set ours below
        (length,) = struct.unpack(">I", await self._read(4))
        self.name = (await self._read(length)).decode(errors="replace")
        await self._write(b"\x00\x00\x00\x00" + PIXEL_FORMAT)
        await self._write(struct.pack(">BxHi", 2, 1, ENCODING_RAW))

    async def frame(self) -> Frame:
        """Request and read one complete (non-incremental) framebuffer."""
        await self._write(struct.pack(">BBHHHH", 3, 0, 0, 0, self.width, self.height))
        pixels = bytearray(self.width * self.height * 4)
        while True:
            (kind,) = struct.unpack(">B", await self._read(1))
            if kind == 0:
                break
            await self._skip_message(kind)
        (rects,) = struct.unpack(">xH", await self._read(3))
        for _ in range(rects):
            x, y, w, h, encoding = struct.unpack(">HHHHi", await self._read(12))
            if encoding != ENCODING_RAW:
                raise RFBError(f"unexpected encoding {encoding} (only Raw was requested)")
            data = await self._read(w * h * 4)
            for row in range(h):
                start = ((y + row) * self.width + x) * 4
                pixels[start : start + w * 4] = data[row * w * 4 : (row + 1) * w * 4]
        return Frame(self.width, self.height, bytes(pixels))

    async def _skip_message(self, kind: int) -> None:
        if kind == 1:  # SetColourMapEntries
            _, count = struct.unpack(">xHH", await self._read(5))
            await self._read(6 * count)
        elif kind == 2:  # Bell
            pass
        elif kind == 3:  # ServerCutText
            (length,) = struct.unpack(">3xI", await self._read(7))
            await self._read(length)
        else:
            raise RFBError(f"unknown VNC server message type {kind}")

    async def wait_drawn(self, timeout: float, interval: float = 0.5) -> Frame:
        """Poll full frames until one is not blank (the first ones are black until the WM draws)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            frame = await self.frame()
            if not frame.is_blank():
                return frame
            if asyncio.get_running_loop().time() > deadline:
                raise RFBError(f"the desktop stayed blank for {timeout:.0f} s")
            await asyncio.sleep(interval)
