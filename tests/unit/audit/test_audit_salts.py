"""Payload salts: drawn a block at a time from the OS's CSPRNG and split (one system call
per 128 records), never handed out twice, in a thread or a forked child."""

from __future__ import annotations

import os
import threading

from gateway.audit.batch import fresh_salt, prepare_record
from gateway.audit.records import AuditRecord
from gateway.tlog.leaf import SALT_SIZE, payload_commitment


def test_salts_are_of_the_salt_size_and_never_repeat() -> None:
    salts = [fresh_salt() for _ in range(1000)]  # several blocks
    assert {len(salt) for salt in salts} == {SALT_SIZE}
    assert len(set(salts)) == len(salts)


def test_each_record_commits_with_its_own_salt() -> None:
    record = AuditRecord("call.outcome", "r", {"status": "ok"})
    first, second = prepare_record(record), prepare_record(record)
    assert first.salt != second.salt
    assert first.commitment == payload_commitment(first.salt, record.payload)


def test_threads_draw_different_salts() -> None:
    drawn: list[bytes] = []
    lock = threading.Lock()

    def draw() -> None:
        mine = [fresh_salt() for _ in range(200)]
        with lock:
            drawn.extend(mine)

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(drawn)) == 800


def test_a_forked_child_never_hands_out_its_parents_salts() -> None:
    fresh_salt()  # the parent holds a block with salts it has not handed out yet
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next salts and leave at once
        try:
            os.write(writer, b"".join(fresh_salt() for _ in range(8)))
        finally:
            os._exit(0)
    os.close(writer)
    child = b""
    while chunk := os.read(reader, 4096):
        child += chunk
    os.close(reader)
    os.waitpid(pid, 0)
    parent = {fresh_salt() for _ in range(8)}
    child_salts = {child[i : i + SALT_SIZE] for i in range(0, len(child), SALT_SIZE)}
    assert len(child_salts) == 8
    assert not parent & child_salts
