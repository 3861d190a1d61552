"""SIP over TLS toward an upper (``upstreams[].transport: tls``, RFC 3261 §26): the gateway dials the
upper's TLS port, verifies it against ``tls_ca``, registers with digest in ``sips:`` URIs, and answers the
upper's Catalog query over the same connection. The certificates are made at test time with openssl.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

import pytest
from gwproc import merge_config
from test_cascade_catalog import ask_catalog
from upper_harness import FakeUpper, upstream_config
from wire import LoopbackPki, loopback_pki

from gbgw.gb28181.config import ConfigError, load_config
from gbgw.sip.tls import server_context

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LoopbackPki:
    return loopback_pki(tmp_path_factory.mktemp("upper-pki"), "upper")


async def test_gateway_registers_to_a_tls_upper_and_answers_its_catalog(
    gateway_factory: Callable[..., Any], pki: LoopbackPki
) -> None:
    upper = await FakeUpper().start()
    _, tls_port = await upper.transport.start_tls("127.0.0.1", 0, server_context(str(pki.cert), str(pki.key)))
    entry = upstream_config(upper, transport="tls", address=f"127.0.0.1:{tls_port}", tls_ca=str(pki.ca))
    gateway = await gateway_factory({"sip": {"t1": 0.1, "t2": 0.5}, "upstreams": [entry]})
    try:
        await upper.wait(lambda: upper.registered.is_set(), 10, "a REGISTER over TLS")
        (register, *_) = upper.registers
        assert register.source.transport == "TLS"
        assert register.request.uri.startswith("sips:")
        assert "SIP/2.0/TLS" in (register.request.get("Via") or "")
        assert "transport=tls" in (register.request.get("Contact") or "").lower()
        bodies = await ask_catalog(upper, 7001)
        assert bodies
        responses = [m for m in upper.messages if m.doc is not None and m.doc.sn == 7001]
        assert responses and all(m.source.transport == "TLS" for m in responses)
        assert all(m.request.uri.startswith("sips:") for m in responses)
    finally:
        await gateway.stop()
        await upper.close()


async def test_tls_keys_need_transport_tls(pki: LoopbackPki) -> None:
    upper = FakeUpper()
    upper.port = 5061
    base = {"sip": {"id": "34020000002000000001"}}
    with pytest.raises(ConfigError, match=r"upstreams\[0\]\.tls_ca.*transport: tls"):
        load_config(merge_config(base, {"upstreams": [upstream_config(upper, tls_ca=str(pki.ca))]}))
    with pytest.raises(ConfigError, match=r"upstreams\[0\]\.tls_ca"):
        load_config(merge_config(base, {"upstreams": [upstream_config(upper, transport="tls",
                                                                      tls_ca=str(pki.ca) + ".missing")]}))
    cfg = load_config(merge_config(base, {"upstreams": [upstream_config(upper, transport="tls", tls_ca=str(pki.ca))]}))
    assert cfg.upstreams[0].transport == "tls" and cfg.upstreams[0].tls_ca == str(pki.ca)
