"""Card readers: what each input path accepts, a serial reader through a virtual line, a keyboard FIFO."""

import asyncio
import os
from pathlib import Path

import pytest
import serial

from contract.gateway_config import ReaderConfig
from edge.access.readers import BadInput, Credential, LineReader, parse_input
from simulator.serial_line import VirtualSerialLine


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"card": "04A3B2C1"}', Credential("card", "04A3B2C1")),
        (b'{"card": 12345678}', Credential("card", "12345678")),
        (b"  0012345678\r\n", Credential("card", "0012345678")),
        ('{"pin": "4711"}', Credential("pin", "4711")),
        ("pin:123456", Credential("pin", "123456")),
        ('{"qr": "Zm9vYmFy-token"}', Credential("qr", "Zm9vYmFy-token")),
        ("QR:abc def", Credential("qr", "abc def")),
        (b'"04a3b2c1"', Credential("card", "04a3b2c1")),
    ],
)
def test_accepted_inputs(data: bytes | str, expected: Credential) -> None:
    assert parse_input(data) == expected


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"\xff\xfe", "not UTF-8"),
        (b"{not json", "not valid JSON"),
        (b'{"card": "1234", "pin": "1234"}', "exactly one"),
        (b'["card"]', "exactly one"),
        (b'{"card": true}', "must be a string"),
        (b"12G4", "card number"),
        (b"123", "card number"),
        (b"pin:12ab", "PIN is 4 to 12 digits"),
        (b"qr:", "QR token"),
    ],
)
def test_refused_inputs_say_why(data: bytes, why: str) -> None:
    with pytest.raises(BadInput, match=why):
        parse_input(data)


def collect() -> tuple[list[tuple[str, Credential]], object]:
    seen: list[tuple[str, Credential]] = []
    return seen, lambda reader, credential: seen.append((reader.name, credential))


async def until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"condition not met within {timeout:g} s")
        await asyncio.sleep(0.02)


def test_a_serial_reader_reads_lines_through_a_pty_pair(caplog: pytest.LogCaptureFixture) -> None:
    """The reader's end of a virtual null-modem cable; the test types on the other like a reader would."""
    line = VirtualSerialLine().start()
    seen, on_credential = collect()
    reader = ReaderConfig(name="gate-reader", door="gate", kind="serial", path=line.a_path, baudrate=9600)

    async def run() -> None:
        worker = LineReader(reader, on_credential)  # type: ignore[arg-type]
        task = asyncio.create_task(worker.run())
        try:
            await asyncio.wait_for(worker.opened.wait(), 10)
            with serial.Serial(line.b_path, 9600, timeout=1) as other_end:
                other_end.write(b"04A3B2C1\r\n")
                other_end.write(b"garbage!\r\n0012")  # a bad line, then a number split over two writes
                other_end.flush()
                await asyncio.sleep(0.05)
                other_end.write(b"345678\n")
                other_end.flush()
                await until(lambda: len(seen) == 2)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    try:
        asyncio.run(run())
    finally:
        line.stop()
    assert seen == [("gate-reader", Credential("card", "04A3B2C1")), ("gate-reader", Credential("card", "0012345678"))]
    assert "reader gate-reader: input ignored: a card number is" in caplog.text


def test_a_keyboard_reader_reads_a_fifo_and_reopens_a_missing_path(tmp_path: Path) -> None:
    fifo = tmp_path / "wedge"
    seen, on_credential = collect()
    reader = ReaderConfig(name="wedge", door="gate", kind="keyboard", path=str(fifo))

    async def run() -> None:
        worker = LineReader(reader, on_credential, retry=0.05, retry_cap=0.1)  # type: ignore[arg-type]
        task = asyncio.create_task(worker.run())
        try:
            await asyncio.sleep(0.2)  # the path does not exist yet: retried
            assert not worker.opened.is_set()
            os.mkfifo(fifo)
            await asyncio.wait_for(worker.opened.wait(), 10)
            for number in ("11112222", "33334444"):  # each typed by a writer that then closes the FIFO
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                os.write(fd, f"{number}\n".encode())
                os.close(fd)
            await until(lambda: len(seen) == 2)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(run())
    assert [c.value for _, c in seen] == ["11112222", "33334444"]


def test_a_regular_file_is_refused_with_the_reason(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "typed.txt"
    path.write_text("04A3B2C1\n")
    seen, on_credential = collect()
    reader = ReaderConfig(name="wedge", door="gate", kind="keyboard", path=str(path))

    async def run() -> None:
        worker = LineReader(reader, on_credential, retry=0.05, retry_cap=0.1)  # type: ignore[arg-type]
        task = asyncio.create_task(worker.run())
        await until(lambda: "use a FIFO (mkfifo) or a terminal device" in caplog.text)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(run())
    assert seen == []
