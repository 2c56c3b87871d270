from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AdapterType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ADAPTER_TYPE_AUTO: _ClassVar[AdapterType]
    ADAPTER_TYPE_PARA: _ClassVar[AdapterType]
    ADAPTER_TYPE_LORA: _ClassVar[AdapterType]

class AdapterTier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ADAPTER_TIER_UNSPECIFIED: _ClassVar[AdapterTier]
    ADAPTER_TIER_DISK: _ClassVar[AdapterTier]
    ADAPTER_TIER_HOST: _ClassVar[AdapterTier]
    ADAPTER_TIER_DEVICE: _ClassVar[AdapterTier]

class AdapterState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ADAPTER_STATE_UNSPECIFIED: _ClassVar[AdapterState]
    ADAPTER_STATE_READY: _ClassVar[AdapterState]
    ADAPTER_STATE_ON_DISK: _ClassVar[AdapterState]
    ADAPTER_STATE_RELOADING: _ClassVar[AdapterState]
    ADAPTER_STATE_FAILED: _ClassVar[AdapterState]
ADAPTER_TYPE_AUTO: AdapterType
ADAPTER_TYPE_PARA: AdapterType
ADAPTER_TYPE_LORA: AdapterType
ADAPTER_TIER_UNSPECIFIED: AdapterTier
ADAPTER_TIER_DISK: AdapterTier
ADAPTER_TIER_HOST: AdapterTier
ADAPTER_TIER_DEVICE: AdapterTier
ADAPTER_STATE_UNSPECIFIED: AdapterState
ADAPTER_STATE_READY: AdapterState
ADAPTER_STATE_ON_DISK: AdapterState
ADAPTER_STATE_RELOADING: AdapterState
ADAPTER_STATE_FAILED: AdapterState

class LoadAdapterRequest(_message.Message):
    __slots__ = ("name", "tenant", "path", "type", "sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    tenant: str
    path: str
    type: AdapterType
    sha256: str
    def __init__(self, name: _Optional[str] = ..., tenant: _Optional[str] = ..., path: _Optional[str] = ..., type: _Optional[_Union[AdapterType, str]] = ..., sha256: _Optional[str] = ...) -> None: ...

class UnloadAdapterRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UnloadAdapterResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAdaptersRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class ListAdaptersResponse(_message.Message):
    __slots__ = ("adapters",)
    ADAPTERS_FIELD_NUMBER: _ClassVar[int]
    adapters: _containers.RepeatedCompositeFieldContainer[AdapterInfo]
    def __init__(self, adapters: _Optional[_Iterable[_Union[AdapterInfo, _Mapping]]] = ...) -> None: ...

class GetAdapterRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class AdapterInfo(_message.Message):
    __slots__ = ("name", "tenant", "path", "type", "rank", "bytes", "version", "tier", "in_flight", "load_seconds", "loaded_at_unix_seconds", "sha256", "state", "last_error", "retired_in_flight")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    LOAD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_UNIX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    RETIRED_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    tenant: str
    path: str
    type: AdapterType
    rank: int
    bytes: int
    version: int
    tier: AdapterTier
    in_flight: int
    load_seconds: float
    loaded_at_unix_seconds: float
    sha256: str
    state: AdapterState
    last_error: str
    retired_in_flight: int
    def __init__(self, name: _Optional[str] = ..., tenant: _Optional[str] = ..., path: _Optional[str] = ..., type: _Optional[_Union[AdapterType, str]] = ..., rank: _Optional[int] = ..., bytes: _Optional[int] = ..., version: _Optional[int] = ..., tier: _Optional[_Union[AdapterTier, str]] = ..., in_flight: _Optional[int] = ..., load_seconds: _Optional[float] = ..., loaded_at_unix_seconds: _Optional[float] = ..., sha256: _Optional[str] = ..., state: _Optional[_Union[AdapterState, str]] = ..., last_error: _Optional[str] = ..., retired_in_flight: _Optional[int] = ...) -> None: ...

class GetServerStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerStats(_message.Message):
    __slots__ = ("kv_blocks_total", "kv_blocks_free", "block_size", "requests_running", "requests_waiting", "requests_in_flight", "preemptions", "engine_steps", "draining", "prefix_cache_query_tokens", "prefix_cache_hit_tokens", "prefix_cache_blocks")
    KV_BLOCKS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    KV_BLOCKS_FREE_FIELD_NUMBER: _ClassVar[int]
    BLOCK_SIZE_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_RUNNING_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_WAITING_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    PREEMPTIONS_FIELD_NUMBER: _ClassVar[int]
    ENGINE_STEPS_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    PREFIX_CACHE_QUERY_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PREFIX_CACHE_HIT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PREFIX_CACHE_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    kv_blocks_total: int
    kv_blocks_free: int
    block_size: int
    requests_running: int
    requests_waiting: int
    requests_in_flight: int
    preemptions: int
    engine_steps: int
    draining: bool
    prefix_cache_query_tokens: int
    prefix_cache_hit_tokens: int
    prefix_cache_blocks: int
    def __init__(self, kv_blocks_total: _Optional[int] = ..., kv_blocks_free: _Optional[int] = ..., block_size: _Optional[int] = ..., requests_running: _Optional[int] = ..., requests_waiting: _Optional[int] = ..., requests_in_flight: _Optional[int] = ..., preemptions: _Optional[int] = ..., engine_steps: _Optional[int] = ..., draining: bool = ..., prefix_cache_query_tokens: _Optional[int] = ..., prefix_cache_hit_tokens: _Optional[int] = ..., prefix_cache_blocks: _Optional[int] = ...) -> None: ...
