"""Python client for para-server: generated gRPC stubs (para.v1) plus a thin helper.

    from para_client import Client
    with Client("localhost:50051", api_key="...") as c:
        for chunk in c.stream("Hello", adapter="acme-support", max_tokens=32):
            print(chunk.text_delta, end="", flush=True)
"""
from para_client.client import Client, GenerationError  # noqa: F401
from para.v1 import admin_pb2, generation_pb2  # noqa: F401
