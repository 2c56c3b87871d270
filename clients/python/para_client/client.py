"""A thin, typed helper over the generated para.v1 stubs."""
from __future__ import annotations

import json
from typing import Iterable, Iterator, Optional, Sequence

import grpc

from para.v1 import admin_pb2, admin_pb2_grpc, generation_pb2, generation_pb2_grpc


class GenerationError(Exception):
    """A call failed: `code` is the grpc.StatusCode, `message` the server's explanation."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


def _raise(e: grpc.RpcError) -> None:
    raise GenerationError(e.code(), e.details()) from None


class Client:
    """One channel to a para-server, authenticated with a tenant's (or an admin's) API key."""

    def __init__(self, target: str, api_key: str, *, root_certificates: Optional[bytes] = None,
                 private_key: Optional[bytes] = None, certificate_chain: Optional[bytes] = None,
                 server_name: Optional[str] = None, options: Sequence[tuple] = ()):
        opts = list(options)
        if server_name:
            opts.append(("grpc.ssl_target_name_override", server_name))
        if root_certificates is not None:
            creds = grpc.ssl_channel_credentials(root_certificates, private_key, certificate_chain)
            self._channel = grpc.secure_channel(target, creds, options=opts)
        else:
            self._channel = grpc.insecure_channel(target, options=opts)
        self._metadata = (("authorization", f"Bearer {api_key}"),)
        self._gen = generation_pb2_grpc.GenerationStub(self._channel)
        self._admin = admin_pb2_grpc.AdminStub(self._channel)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    @staticmethod
    def request(prompt: Optional[str] = None, *, token_ids: Optional[Iterable[int]] = None, adapter: str = "",
                max_tokens: Optional[int] = None, temperature: Optional[float] = None,
                top_k: Optional[int] = None, top_p: Optional[float] = None, seed: Optional[int] = None,
                repetition_penalty: Optional[float] = None, stop: Sequence[str] = (),
                stop_token_ids: Sequence[int] = (), ignore_eos: bool = False, logprobs: Optional[int] = None,
                prompt_logprobs: Optional[int] = None, request_id: str = "",
                priority: int = 0, messages: Optional[Sequence[dict]] = None,
                presence_penalty: Optional[float] = None, frequency_penalty: Optional[float] = None,
                min_p: Optional[float] = None, logit_bias: Optional[dict] = None, min_tokens: int = 0,
                include_stop_str_in_output: bool = False, skip_special_tokens: Optional[bool] = None,
                n: int = 0, best_of: int = 0, beam_width: int = 0, length_penalty: Optional[float] = None,
                early_stopping: str = "",
                add_generation_prompt: Optional[bool] = None, continue_final_message: bool = False,
                template_kwargs: Optional[dict] = None) -> generation_pb2.GenerateRequest:
        """Builds a GenerateRequest; unset options keep the server's defaults. The prompt is `prompt`
        (text), `token_ids`, or `messages` (a conversation of {"role", "content"[, "name"]} dicts,
        rendered by the model's chat template)."""
        r = generation_pb2.GenerateRequest(adapter=adapter, request_id=request_id, priority=priority)
        if prompt is not None:
            r.text = prompt
        if token_ids is not None:
            r.token_ids.ids.extend(token_ids)
        if messages is not None:
            for m in messages:
                r.chat.messages.add(role=m["role"], content=m["content"], name=m.get("name", ""))
            if add_generation_prompt is not None:
                r.chat.add_generation_prompt = add_generation_prompt
            r.chat.continue_final_message = continue_final_message
            if template_kwargs:
                r.chat.template_kwargs_json = json.dumps(template_kwargs)
        for field, value in (("temperature", temperature), ("top_k", top_k), ("top_p", top_p), ("seed", seed),
                             ("repetition_penalty", repetition_penalty), ("presence_penalty", presence_penalty),
                             ("frequency_penalty", frequency_penalty), ("min_p", min_p)):
            if value is not None:
                setattr(r.sampling, field, value)
        for token, bias in (logit_bias or {}).items():
            r.sampling.logit_bias[int(token)] = bias
        r.stopping.min_tokens = min_tokens
        r.n, r.best_of = n, best_of
        if beam_width:
            r.beam.beam_width = beam_width
            r.beam.early_stopping = early_stopping
            if length_penalty is not None:
                r.beam.length_penalty = length_penalty
        r.stopping.include_stop_str_in_output = include_stop_str_in_output
        if skip_special_tokens is not None:
            r.stopping.skip_special_tokens = skip_special_tokens
        if max_tokens is not None:
            r.stopping.max_tokens = max_tokens
        r.stopping.stop.extend(stop)
        r.stopping.stop_token_ids.extend(stop_token_ids)
        r.stopping.ignore_eos = ignore_eos
        if logprobs is not None:
            r.logprobs.top_n = logprobs
        if prompt_logprobs is not None:
            r.logprobs.prompt_top_n = prompt_logprobs
        return r

    def generate(self, prompt: Optional[str] = None, *, timeout: Optional[float] = None,
                 **options) -> generation_pb2.GenerateResponse:
        """Runs one request to completion (unary)."""
        try:
            return self._gen.Generate(self.request(prompt, **options), metadata=self._metadata, timeout=timeout)
        except grpc.RpcError as e:
            _raise(e)

    def chat(self, messages: Sequence[dict], *, timeout: Optional[float] = None,
             **options) -> generation_pb2.GenerateResponse:
        """Runs a conversation through the model's chat template to completion (unary)."""
        return self.generate(messages=messages, timeout=timeout, **options)

    def chat_stream(self, messages: Sequence[dict], *, timeout: Optional[float] = None,
                    **options) -> Iterator[generation_pb2.GenerateStreamResponse]:
        """Streams the answer to a conversation; the last chunk carries finish_reason and usage."""
        return self.stream(messages=messages, timeout=timeout, **options)

    def stream(self, prompt: Optional[str] = None, *, timeout: Optional[float] = None,
               **options) -> Iterator[generation_pb2.GenerateStreamResponse]:
        """Yields chunks as they are generated; the last carries finish_reason and usage."""
        call = self._gen.GenerateStream(self.request(prompt, **options), metadata=self._metadata, timeout=timeout)
        try:
            yield from call
        except grpc.RpcError as e:
            _raise(e)
        finally:
            call.cancel()  # a no-op once finished; frees the server side if the caller stops early

    def tokenize(self, text: str) -> generation_pb2.TokenizeResponse:
        try:
            return self._gen.Tokenize(generation_pb2.TokenizeRequest(text=text), metadata=self._metadata)
        except grpc.RpcError as e:
            _raise(e)

    def model_info(self) -> generation_pb2.ModelInfoResponse:
        try:
            return self._gen.ModelInfo(generation_pb2.ModelInfoRequest(), metadata=self._metadata)
        except grpc.RpcError as e:
            _raise(e)

    def load_adapter(self, name: str, tenant: str, path: str, *, type: str = "auto", sha256: str = "",
                     timeout: Optional[float] = None) -> admin_pb2.AdapterInfo:
        """Admin keys only. Loads (or replaces, as a new version) a tenant's adapter."""
        kinds = {"auto": admin_pb2.ADAPTER_TYPE_AUTO, "para": admin_pb2.ADAPTER_TYPE_PARA,
                 "lora": admin_pb2.ADAPTER_TYPE_LORA}
        req = admin_pb2.LoadAdapterRequest(name=name, tenant=tenant, path=path, type=kinds[type], sha256=sha256)
        try:
            return self._admin.LoadAdapter(req, metadata=self._metadata, timeout=timeout)
        except grpc.RpcError as e:
            _raise(e)

    def unload_adapter(self, name: str) -> None:
        """Admin keys only. New requests naming it get NOT_FOUND; requests in flight finish."""
        try:
            self._admin.UnloadAdapter(admin_pb2.UnloadAdapterRequest(name=name), metadata=self._metadata)
        except grpc.RpcError as e:
            _raise(e)

    def list_adapters(self, tenant: str = "") -> Sequence[admin_pb2.AdapterInfo]:
        """Admin keys only."""
        try:
            return self._admin.ListAdapters(admin_pb2.ListAdaptersRequest(tenant=tenant),
                                            metadata=self._metadata).adapters
        except grpc.RpcError as e:
            _raise(e)

    def get_adapter(self, name: str) -> admin_pb2.AdapterInfo:
        """Admin keys only."""
        try:
            return self._admin.GetAdapter(admin_pb2.GetAdapterRequest(name=name), metadata=self._metadata)
        except grpc.RpcError as e:
            _raise(e)

    def server_stats(self) -> admin_pb2.ServerStats:
        """Admin keys only."""
        try:
            return self._admin.GetServerStats(admin_pb2.GetServerStatsRequest(), metadata=self._metadata)
        except grpc.RpcError as e:
            _raise(e)
