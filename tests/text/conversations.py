"""Conversations for the chat-template conformance tests: each is the variables one render gets
(messages, add_generation_prompt, bos_token, eos_token, tools, extras), as transformers passes
them. They cover systems and none, multi-turn, empty and whitespace content, unicode, text that
looks like Jinja, a very long message, generation prompts on and off, tools and tool calls, and
conversations that make templates raise or fail.
"""
import copy

U = "user"
A = "assistant"
S = "system"

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Zürich"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
        "return": {"type": "number", "description": "Temperature"},
    },
}
CLOCK_TOOL = {
    "type": "function",
    "function": {"name": "now", "description": "The time now.", "parameters": {"type": "object", "properties": {}}},
}


def msg(role, content):
    return {"role": role, "content": content}


LONG_TEXT = ("All work and no play makes Jack a dull boy. " * 5000).strip()  # ~215 KB
UNICODE = "Grüße, 世界! 🎉 Ωμέγα — עברית العربية e\u0301 \u00a0nbsp\u2028sep \U0001F600"
JINJA_LIKE = "{{ messages }} {% if true %}x{% endif %} {# not a comment #} {%- raw -%}"
SPECIAL = "<|im_end|>\n<|im_start|>system\n[INST] <<SYS>> </s> <start_of_turn>"


def base_conversations():
    """(name, messages) pairs that every template family sees."""
    return [
        ("single_user", [msg(U, "Hello!")]),
        ("system_user", [msg(S, "You are terse."), msg(U, "Hi there")]),
        ("multi_turn", [msg(U, "What is 2+2?"), msg(A, "4"), msg(U, "And 3+3?")]),
        ("system_multi_turn", [msg(S, "Be kind."), msg(U, "a"), msg(A, "b"), msg(U, "c"), msg(A, "d"),
                               msg(U, "e")]),
        ("assistant_last", [msg(U, "Tell me a joke"), msg(A, "Why did the chicken cross the road?")]),
        ("empty_user", [msg(U, "")]),
        ("empty_system", [msg(S, ""), msg(U, "question")]),
        ("whitespace_content", [msg(U, "   padded  \n\n"), msg(A, "\t tab\t "), msg(U, "\n")]),
        ("unicode", [msg(S, "Réponds en français. 日本語も"), msg(U, UNICODE)]),
        ("jinja_like_text", [msg(U, JINJA_LIKE), msg(A, "{{ 'not rendered' }}"), msg(U, "{% endfor %}")]),
        ("special_tokens_in_text", [msg(U, SPECIAL)]),
        ("quotes_backslashes", [msg(U, 'She said "hi" and \'bye\' \\ C:\\path\\n')]),
        ("very_long_message", [msg(S, "Summarize."), msg(U, LONG_TEXT)]),
        ("many_turns", [msg(U if i % 2 == 0 else A, f"turn {i}") for i in range(41)]),
        ("think_in_assistant", [msg(U, "q"), msg(A, "<think>hmm</think>The answer."), msg(U, "why?")]),
        ("two_users_in_a_row", [msg(U, "one"), msg(U, "two")]),
        ("assistant_first", [msg(A, "I speak first"), msg(U, "ok")]),
        ("system_in_middle", [msg(U, "hi"), msg(S, "late system"), msg(U, "again")]),
        ("unknown_role", [msg(U, "hi"), msg("critic", "that was bad")]),
        ("no_messages", []),
        ("missing_content", [{"role": U}]),
        ("integer_content", [msg(U, 42)]),
    ]


def tool_conversations():
    call = {"type": "function", "id": "call12345",
            "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}
    call_str = copy.deepcopy(call)
    call_str["function"]["arguments"] = '{"city": "Paris"}'
    return [
        ("tools_offered", [msg(U, "Weather in Paris?")], [WEATHER_TOOL, CLOCK_TOOL]),
        ("tools_with_system", [msg(S, "Use tools."), msg(U, "Weather?")], [WEATHER_TOOL]),
        ("tool_call_and_result",
         [msg(U, "Weather in Paris?"), {"role": A, "content": None, "tool_calls": [call]},
          {"role": "tool", "content": "18", "tool_call_id": "call12345"}, msg(A, "It is 18°C.")],
         [WEATHER_TOOL]),
        ("tool_call_string_arguments",
         [msg(U, "Weather?"), {"role": A, "content": "", "tool_calls": [call_str]},
          {"role": "tool", "content": "{\"t\": 18}", "tool_call_id": "call12345"}],
         [WEATHER_TOOL]),
        ("two_tool_calls",
         [msg(U, "Both?"), {"role": A, "content": None, "tool_calls": [call, call]},
          {"role": "tool", "content": "18", "tool_call_id": "call12345"},
          {"role": "tool", "content": "19", "tool_call_id": "call12345"}],
         [WEATHER_TOOL]),
        ("tools_no_user", [msg(S, "only system")], [WEATHER_TOOL]),
    ]


def variable_sets():
    """[(case name, variables)] for one family: every conversation with and without a
    generation prompt, then the tool conversations, then extra keyword arguments."""
    cases = []
    for name, messages in base_conversations():
        for gen in (True, False):
            cases.append((f"{name}/gen={gen}",
                          {"messages": messages, "add_generation_prompt": gen,
                           "bos_token": "<s>", "eos_token": "</s>", "tools": None}))
    for name, messages, tools in tool_conversations():
        cases.append((name, {"messages": messages, "add_generation_prompt": True,
                             "bos_token": "<s>", "eos_token": "</s>", "tools": tools}))
    cases.append(("tools_absent_not_none", {"messages": [msg(U, "hi")], "add_generation_prompt": True,
                                            "bos_token": "<s>", "eos_token": "</s>"}))
    cases.append(("extra_kwargs", {"messages": [msg(S, "sys"), msg(U, "hi")], "add_generation_prompt": True,
                                   "bos_token": "<s>", "eos_token": "</s>", "tools": None,
                                   "date_string": "26 Jul 2024", "tools_in_user_message": False}))
    return cases
