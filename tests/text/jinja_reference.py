"""The reference renderer: Python's jinja2 configured the way transformers renders chat templates.

Written here from transformers' documented behaviour (not imported from it): an
ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks and the loopcontrols extension; a
`{% generation %}` tag that renders its body; the globals raise_exception(message) (raises
jinja2's TemplateError with exactly that message) and strftime_now(format) (the local time now);
and a `tojson` filter that is json.dumps with ensure_ascii=False unless told otherwise.

render(source, variables) returns ("ok", text), ("raised", message) for raise_exception, or
("error", "<ExceptionType>: message") for any other failure, compile errors included.
"""
import datetime
import json

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


class TemplateRaised(jinja2.exceptions.TemplateError):
    """What raise_exception() raises: a TemplateError whose str() is the template's message."""


def _raise_exception(message):
    raise TemplateRaised(message)


def _strftime_now(fmt):
    return datetime.datetime.now().strftime(fmt)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


class GenerationTag(Extension):
    """`{% generation %}...{% endgeneration %}`: renders its body (transformers uses the span to
    mark assistant tokens; the text is unchanged)."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_render_body"), [], [], body).set_lineno(lineno)

    def _render_body(self, caller):
        return caller()


def make_environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


_ENV = make_environment()


def render(source, variables):
    try:
        template = _ENV.from_string(source)
        return ("ok", template.render(**variables))
    except TemplateRaised as e:
        return ("raised", str(e))
    except Exception as e:  # noqa: BLE001 - every failure is a result to compare
        return ("error", f"{type(e).__name__}: {e}")
