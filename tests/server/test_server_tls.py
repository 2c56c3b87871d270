"""TLS (--tls-cert/--tls-key) and mutual TLS (--tls-client-ca) with certificates made by openssl:
clients that trust the CA (and, for mTLS, present a certificate it signed) are served; plaintext
clients, clients without a certificate and clients with a certificate from another CA are not."""
import shutil

import grpc
import pytest

import server_harness as h

pytestmark = [h.requires_binaries,
              pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")]

SERVER_NAME = "localhost"  # the certificate's name; we dial 127.0.0.1


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    files = h.make_certs(tmp_path_factory.mktemp("certs"))
    return {k: open(v, "rb").read() for k, v in files.items()} | {"paths": files}


def secure_client(s, certs, key="acme", client_cert=None):
    kw = {}
    if client_cert:
        kw = {"private_key": certs[f"{client_cert}.key"], "certificate_chain": certs[f"{client_cert}.pem"]}
    return h.Client(s.target, h.KEYS[key], root_certificates=certs["ca.pem"], server_name=SERVER_NAME, **kw)


def works(client):
    with client as c:
        r = c.generate("Hello", max_tokens=3, ignore_eos=True, timeout=20)
    assert len(r.token_ids) == 3


def refused(client):
    with client as c:
        with pytest.raises(h.GenerationError) as e:
            c.generate("Hello", max_tokens=3, ignore_eos=True, timeout=5)
    assert e.value.code == grpc.StatusCode.UNAVAILABLE, e.value


@pytest.fixture(scope="module")
def tls_server(tiny_model, tenants_config, certs, tmp_path_factory):
    p = certs["paths"]
    s = h.ServerProcess(tiny_model, tenants_config, tmp_path_factory.mktemp("tls-server"), "--kv-cache-blocks", 64,
                        "--tls-cert", p["server.pem"], "--tls-key", p["server.key"])
    yield s
    s.stop()


@pytest.fixture(scope="module")
def mtls_server(tiny_model, tenants_config, certs, tmp_path_factory):
    p = certs["paths"]
    s = h.ServerProcess(tiny_model, tenants_config, tmp_path_factory.mktemp("mtls-server"), "--kv-cache-blocks", 64,
                        "--tls-cert", p["server.pem"], "--tls-key", p["server.key"], "--tls-client-ca", p["ca.pem"])
    yield s
    s.stop()


def test_tls_client_is_served(tls_server, certs):
    works(secure_client(tls_server, certs))
    with secure_client(tls_server, certs, key="initech") as c:  # streams and adapters too
        chunks = list(c.stream("Hello", adapter="initech-lora", max_tokens=4, ignore_eos=True, timeout=20))
    assert sum(len(ch.token_ids) for ch in chunks) == 4


def test_tls_server_refuses_plaintext(tls_server):
    refused(h.Client(tls_server.target, h.KEYS["acme"]))


def test_tls_client_that_does_not_trust_the_ca_is_refused(tls_server, certs):
    refused(h.Client(tls_server.target, h.KEYS["acme"], root_certificates=certs["rogue-client.pem"],
                     server_name=SERVER_NAME))


def test_tls_still_needs_the_api_key(tls_server, certs):
    with h.Client(tls_server.target, "wrong-key-123", root_certificates=certs["ca.pem"],
                  server_name=SERVER_NAME) as c:
        with pytest.raises(h.GenerationError) as e:
            c.generate("Hello", max_tokens=1, timeout=20)
    assert e.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_mtls_client_with_certificate_is_served(mtls_server, certs):
    works(secure_client(mtls_server, certs, client_cert="client"))


def test_mtls_client_without_certificate_is_refused(mtls_server, certs):
    refused(secure_client(mtls_server, certs))


def test_mtls_client_with_certificate_from_another_ca_is_refused(mtls_server, certs):
    refused(secure_client(mtls_server, certs, client_cert="rogue-client"))


def test_mtls_refuses_plaintext(mtls_server):
    refused(h.Client(mtls_server.target, h.KEYS["acme"]))


def test_tls_key_without_cert_is_a_startup_error(tiny_model, tenants_config, certs, tmp_path):
    p = h.run(h.SERVER, "--model", tiny_model, "--config", tenants_config, "--port", 0, "--host", "127.0.0.1",
              "--tls-key", certs["paths"]["server.key"], check=False, timeout=30)
    assert p.returncode != 0
    assert "--tls_cert and --tls_key go together" in p.stderr
