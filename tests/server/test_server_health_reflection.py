"""grpc.health.v1 says SERVING once the server is up, and server reflection describes the
public services, so that generic tools (grpcurl, grpc_health_probe) work against para-server."""
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from google.protobuf.descriptor_pool import DescriptorPool

import server_harness as h

pytestmark = h.requires_binaries


def test_health_is_serving_after_start(server):
    with server.channel() as ch:
        r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert r.status == health_pb2.HealthCheckResponse.SERVING


def test_health_needs_no_api_key_and_watch_reports_serving(server):
    with server.channel() as ch:
        watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
        first = next(watch)
        watch.cancel()
    assert first.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_services(server):
    with server.channel() as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        responses = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                   timeout=10))
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"para.v1.Generation", "para.v1.Admin", "grpc.health.v1.Health"} <= names, names


def test_reflection_describes_the_methods_and_messages(server):
    with server.channel() as ch:
        pool = DescriptorPool(ProtoReflectionDescriptorDatabase(ch))
        gen = pool.FindServiceByName("para.v1.Generation")
        assert {m.name for m in gen.methods} == {"Generate", "GenerateStream", "Tokenize", "ModelInfo"}
        stream = gen.methods_by_name["GenerateStream"]
        assert stream.output_type.full_name == "para.v1.GenerateStreamResponse"
        admin = pool.FindServiceByName("para.v1.Admin")
        assert [m.name for m in admin.methods] == ["GetServerStats", "LoadAdapter", "UnloadAdapter", "ListAdapters",
                                                  "GetAdapter"]
        req = pool.FindMessageTypeByName("para.v1.GenerateRequest")
        assert req.fields_by_name["text"].number == 2
        assert pool.FindMessageTypeByName("para.v1.ServerStats").fields_by_name["draining"].number == 9
