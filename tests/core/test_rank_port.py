"""The port rank 0's store listens on: free when drawn, and outside the kernel's ephemeral range, where another
socket could take it in the seconds before the spawned ranks bind it."""
from __future__ import annotations

import socket

import regbench.run.distributed as distributed
from regbench.run.distributed import LOWEST_DRAWN_PORT, bound_port, ephemeral_ports, free_port


def test_the_ephemeral_range_is_read_from_the_kernel_or_linux_default(tmp_path):
    setting = tmp_path / "ip_local_port_range"
    setting.write_text("40000\t50000\n")
    assert ephemeral_ports(setting) == range(40000, 50001)
    assert ephemeral_ports(tmp_path / "absent") == range(32768, 61000)


def test_ports_are_drawn_free_and_outside_the_ephemeral_range():
    ephemeral = ephemeral_ports()
    ports = {free_port() for _ in range(20)}
    assert all(port >= LOWEST_DRAWN_PORT and port not in ephemeral and bound_port(port) == port for port in ports)
    assert len(ports) > 1  # drawn, not a fixed port that two concurrent runs would share


def test_a_port_in_use_is_refused_and_another_drawn(monkeypatch):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        assert bound_port(taken.getsockname()[1]) is None
    draws = []

    def first_three_taken(port: int) -> int | None:
        draws.append(port)
        return port if len(draws) > 3 else None

    monkeypatch.setattr(distributed, "bound_port", first_three_taken)
    assert free_port() == draws[-1] and len(draws) == 4


def test_with_no_port_outside_the_range_the_kernel_picks_one():
    port = free_port(ephemeral=range(1, 65536))
    assert port in ephemeral_ports()  # what bind(0) gave
    assert bound_port(port) == port
