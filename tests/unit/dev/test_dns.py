"""Cluster DNS: the Corefile, the CoreDNS wrapper module and the readiness probe's wire format."""

from __future__ import annotations

import re
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.rcode
import dns.rrset
import pytest

from moorage_dev import dns as cluster_dns
from moorage_dev.binaries import BinaryError
from moorage_dev.cluster import POD_CIDR, SERVICE_CIDR

KUBECONFIG = Path("/state/coredns.kubeconfig")
# CoreDNS v1.15.0's plugin chain order (core/dnsserver/zdirectives.go), abridged to the plugins
# near ours; a plugin's place in the chain comes from this order, not from the Corefile.
UPSTREAM_ORDER = [
    "reload", "bind", "debug", "trace", "ready", "health", "pprof", "prometheus", "errors",
    "log", "loadbalance", "cache", "template", "hosts", "kubernetes", "file", "forward",
]  # fmt: skip


def _blocks(text: str) -> dict[str, str]:
    """Server block keys → block body (the Corefile has no nested blocks at the top level)."""
    blocks: dict[str, str] = {}
    depth = 0
    key = ""
    body: list[str] = []
    for line in text.splitlines():
        if depth == 0 and line.endswith("{"):
            key = line[:-1].strip()
            body = []
        elif depth > 0:
            body.append(line)
        depth += line.count("{") - line.count("}")
        if depth == 0 and key:
            blocks[key] = "\n".join(body[:-1])
            key = ""
    assert depth == 0, "unbalanced braces"
    return blocks


def _corefile(**overrides: object) -> str:
    args: dict[str, object] = {
        "bind_ip": "10.88.0.1",
        "port": 53,
        "kubeconfig": KUBECONFIG,
        "reverse_cidrs": (SERVICE_CIDR, POD_CIDR),
    }
    args.update(overrides)
    return cluster_dns.corefile(**args)  # type: ignore[arg-type]


def test_cluster_block_serves_the_domain_and_reverse_ranges_from_the_apiserver() -> None:
    blocks = _blocks(_corefile())
    key = "cluster.local:53 10.96.0.0/16:53 10.244.0.0/16:53"
    assert set(blocks) == {key, ".:53"}
    body = blocks[key]
    assert "bind 10.88.0.1" in body
    assert f"kubeconfig {KUBECONFIG}" in body
    assert f"ttl {cluster_dns.RECORD_TTL}" in body
    assert "pods insecure" in body


def test_no_name_is_sent_anywhere_else() -> None:
    text = _corefile()
    assert "forward" not in text
    assert "fallthrough" not in text


def test_every_other_name_gets_nxdomain_on_the_same_address() -> None:
    body = _blocks(_corefile())[".:53"]
    assert "bind 10.88.0.1" in body
    assert re.search(r"template ANY ANY \{\s+rcode NXDOMAIN\s+\}", body)


def test_domain_and_port_are_honoured() -> None:
    blocks = _blocks(_corefile(domain="example.internal", port=1053, reverse_cidrs=()))
    assert set(blocks) == {"example.internal:1053", ".:1053"}


@pytest.mark.parametrize(
    ("health", "ready", "expected", "absent"),
    [
        (None, None, [], ["health", "ready"]),
        (8080, None, ["health 127.0.0.1:8080"], ["ready"]),
        (8080, 8181, ["health 127.0.0.1:8080", "ready 127.0.0.1:8181"], []),
    ],
    ids=["no-probes", "health-only", "both"],
)
def test_probes_listen_on_loopback_only_when_asked(
    health: int | None, ready: int | None, expected: list[str], absent: list[str]
) -> None:
    text = _corefile(health_port=health, ready_port=ready)
    for line in expected:
        assert line in text
    for word in absent:
        assert word not in text


def test_a_host_address_is_not_a_reverse_range() -> None:
    with pytest.raises(ValueError, match="host bits"):
        _corefile(reverse_cidrs=("10.96.0.1/16",))


def test_every_plugin_the_corefile_names_is_compiled_in() -> None:
    text = _corefile(health_port=1, ready_port=2)
    named = {
        line.split()[0] for line in text.splitlines() if line.startswith("    ") and line.strip()
    }
    named -= {"kubeconfig", "pods", "ttl", "rcode", "}"}
    assert named <= set(cluster_dns.COREDNS_PLUGINS)


def test_wrapper_main_registers_exactly_the_chosen_plugins_in_coredns_order() -> None:
    main = cluster_dns.coredns_main_go()
    for plugin in cluster_dns.COREDNS_PLUGINS:
        assert f'_ "github.com/coredns/coredns/plugin/{plugin}"' in main
    assert re.findall(r'^\t\t"(\w+)",$', main, re.M) == list(cluster_dns.COREDNS_PLUGINS)
    positions = [UPSTREAM_ORDER.index(p) for p in cluster_dns.COREDNS_PLUGINS]
    assert positions == sorted(positions)
    assert "core/plugin" not in main  # that import would link every plugin


def test_wrapper_module_pins_the_version() -> None:
    assert (
        f"require github.com/coredns/coredns v{cluster_dns.COREDNS_VERSION}"
        in cluster_dns.coredns_go_mod(cluster_dns.COREDNS_VERSION)
    )


def test_cache_lives_beside_the_control_plane_binaries(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MOORAGE_CACHE_DIR", str(tmp_path))
    directory = cluster_dns.coredns_cache_dir()
    assert directory.parent == tmp_path / "controlplane"
    assert cluster_dns.COREDNS_VERSION in directory.name


def test_explicit_binary_wins_without_building(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "coredns"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("MOORAGE_COREDNS_BIN", str(fake))
    monkeypatch.setenv("MOORAGE_CACHE_DIR", str(tmp_path / "cache"))
    assert cluster_dns.ensure_coredns(print) == fake
    assert not (tmp_path / "cache").exists()


def test_explicit_binary_that_is_not_executable_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MOORAGE_COREDNS_BIN", str(tmp_path / "missing"))
    with pytest.raises(BinaryError, match="MOORAGE_COREDNS_BIN"):
        cluster_dns.ensure_coredns(print)


def test_write_corefile_writes_the_pure_text(tmp_path: Path) -> None:
    path = cluster_dns.write_corefile(
        tmp_path / "dns",
        bind_ip="10.88.0.1",
        port=53,
        kubeconfig=KUBECONFIG,
        reverse_cidrs=(SERVICE_CIDR, POD_CIDR),
    )
    assert path == tmp_path / "dns" / "Corefile"
    assert path.read_text() == _corefile()


def test_write_corefile_passes_the_probe_ports_on(tmp_path: Path) -> None:
    path = cluster_dns.write_corefile(
        tmp_path,
        bind_ip="10.88.0.1",
        port=53,
        kubeconfig=KUBECONFIG,
        reverse_cidrs=(),
        health_port=8080,
        ready_port=8181,
    )
    assert path.read_text() == _corefile(reverse_cidrs=(), health_port=8080, ready_port=8181)


def test_query_is_what_a_dns_library_parses() -> None:
    wire = cluster_dns.encode_query("kubernetes.default.svc.cluster.local", query_id=4242)
    parsed = dns.message.from_wire(wire)
    assert parsed.id == 4242
    assert str(parsed.question[0].name) == "kubernetes.default.svc.cluster.local."
    assert parsed.question[0].rdtype == cluster_dns.TYPE_A


@pytest.mark.parametrize("name", ["", "a..b", "x" * 64 + ".local"], ids=["empty", "gap", "long"])
def test_malformed_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a DNS name"):
        cluster_dns.encode_query(name, query_id=1)


def _reply(query: bytes, *, rcode: int, address: str | None) -> bytes:
    request = dns.message.from_wire(query)
    response = dns.message.make_response(request)
    response.set_rcode(dns.rcode.Rcode(rcode))
    if address is not None:
        name = request.question[0].name
        response.answer.append(dns.rrset.from_text(name, 5, "IN", "A", address))
    return response.to_wire()


def test_reply_header_gives_rcode_and_answer_count() -> None:
    query = cluster_dns.encode_query("a.b", query_id=7)
    assert cluster_dns.decode_reply_header(
        _reply(query, rcode=0, address="10.96.0.1"), query_id=7
    ) == (0, 1)
    assert cluster_dns.decode_reply_header(_reply(query, rcode=3, address=None), query_id=7) == (
        3,
        0,
    )


def test_replies_to_other_queries_and_queries_themselves_are_ignored() -> None:
    query = cluster_dns.encode_query("a.b", query_id=7)
    assert cluster_dns.decode_reply_header(_reply(query, rcode=0, address=None), query_id=8) is None
    assert cluster_dns.decode_reply_header(query, query_id=7) is None
    assert cluster_dns.decode_reply_header(b"\x00\x07", query_id=7) is None


@pytest.fixture
def fake_dns() -> Iterator[tuple[int, list[tuple[int, str | None]]]]:
    """A UDP server on loopback answering each query with the next `(rcode, address)`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    script: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                query, peer = sock.recvfrom(512)
            except TimeoutError:
                continue
            if script:
                rcode, address = script.pop(0)
                sock.sendto(_reply(query, rcode=rcode, address=address), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(sock.getsockname()[1]), script
    finally:
        stop.set()
        thread.join()
        sock.close()


def test_ready_only_when_the_apiservers_service_has_an_address(
    fake_dns: tuple[int, list[tuple[int, str | None]]],
) -> None:
    port, script = fake_dns
    script.extend([(2, None), (0, None), (0, "10.96.0.1")])  # not synced, no data, answered
    assert not cluster_dns.dns_ready("127.0.0.1", port, timeout=2)
    assert not cluster_dns.dns_ready("127.0.0.1", port, timeout=2)
    assert cluster_dns.dns_ready("127.0.0.1", port, timeout=2)


def test_not_ready_when_nothing_answers(
    fake_dns: tuple[int, list[tuple[int, str | None]]],
) -> None:
    port, _script = fake_dns  # an empty script: the server stays silent
    assert not cluster_dns.dns_ready("127.0.0.1", port, timeout=0.3)


def test_header_layout_matches_rfc_1035() -> None:
    wire = cluster_dns.encode_query("x.y", query_id=0x1234)
    assert struct.unpack("!HHHHHH", wire[:12]) == (0x1234, 0x0100, 1, 0, 0, 0)
